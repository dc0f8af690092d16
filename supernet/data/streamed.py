"""Bundles of datasets streamed through DataLoader workers, seen through transform presets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from eqsearch.errors import InputError
from supernet.data.batches import LoaderBatches
from supernet.data.bundle import DataBundle, Normalization, assemble_bundle
from supernet.data.images import StreamedImages
from supernet.data.own_data import image_shape
from supernet.data.spec import DataSpec
from supernet.data.transforms import ToTensorImage, preset_normalization, preset_transforms


def transformed_bundle(
    spec: DataSpec,
    seed: int,
    train: Dataset[Any],
    test: Dataset[Any],
    num_classes: int,
    pin_memory: bool,
    *,
    default: str,
) -> DataBundle:
    """A bundle of two datasets of ``(image, label)`` items seen through the preset
    ``spec.transforms`` (``default`` where None): augmented for training, plain otherwise.

    With ``imagenet`` the size is ``spec.image_size`` (224 by default); with ``cifar`` and
    ``none`` it is the images' own (a given ``image_size`` must equal it).
    """
    preset = spec.transforms or default
    source = f"the validation images of {spec.name}"
    first = ToTensorImage()(test[0][0])
    channels, size = image_shape(first, source) if preset != "imagenet" else (first.shape[0], 0)
    if preset == "imagenet":
        size = spec.image_size or 224
    elif spec.image_size is not None and spec.image_size != size:
        raise InputError(
            f"{source} are {size}×{size} and transforms {preset} keeps that size; got "
            f"image_size {spec.image_size} (drop it, or resize with transforms imagenet)"
        )
    augment, plain = preset_transforms(preset, size, channels=int(channels))
    return loader_bundle(
        spec,
        seed,
        TransformedView(train, augment),
        TransformedView(train, plain),
        TransformedView(test, plain),
        num_classes,
        size,
        pin_memory,
        in_channels=int(channels),
        normalization=preset_normalization(preset, int(channels)),
    )


class TransformedView(Dataset[tuple[Any, int]]):
    """``(transform(image), label)`` of a dataset of ``(image, label)`` items: several views
    (augmented, plain) of one listing."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset = dataset
        self.transform = transform

    @property
    def targets(self) -> Sequence[int]:
        """The labels, as the dataset lists them."""
        return self.dataset.targets  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def loader_bundle(
    spec: DataSpec,
    seed: int,
    train: Dataset[Any],
    train_plain: Dataset[Any],
    test: Dataset[Any],
    num_classes: int,
    image_size: int,
    pin_memory: bool,
    *,
    in_channels: int = 3,
    normalization: Normalization | None = None,
) -> DataBundle:
    """A bundle of datasets of ``(image tensor, label)`` items: augmented training batches
    through ``spec.loader_workers()`` DataLoader workers, and the plain training and test
    images streamed in evaluation batches."""
    workers = spec.loader_workers()
    eval_batch = spec.evaluation_batch_size(in_channels, image_size)

    def streamed(dataset: Dataset[Any]) -> StreamedImages:
        return StreamedImages(
            dataset,
            batch_size=eval_batch,
            workers=workers,
            pin_memory=pin_memory,
            image_shape=(in_channels, image_size, image_size),
        )

    return assemble_bundle(
        spec,
        LoaderBatches(
            train,
            spec.batch_size,
            shuffle=True,
            workers=workers,
            seed=seed,
            pin_memory=pin_memory,
        ),
        streamed(train_plain),
        streamed(test),
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        normalization=normalization,
    )
