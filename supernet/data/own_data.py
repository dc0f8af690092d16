"""The user's own data: dataset factories named as ``module:function`` and DataLoaders as given."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from eqsearch.errors import InputError
from eqsearch.factories import load_factory
from supernet.data.images import Batch, dataset_labels


def load_dataset_factory(reference: str, root: str | None = None) -> tuple[Any, Any]:
    """Call the dataset factory ``reference`` (``package.module:function`` or
    ``path/to/file.py:function``; its code runs, and the reference counts as trusted from
    then on) and return its ``(train_dataset, val_dataset)``.

    The factory takes no arguments, or ``root=`` where a data root is given (``--data-root``).
    Each dataset yields ``(image, label)`` items: PIL images or tensors.

    Raises:
        InputError: the module does not import, has no such function, or the factory does
            not return two datasets.
    """
    factory = load_factory(reference, what="dataset factory")
    made = factory() if root is None else factory(root=root)
    if not isinstance(made, (tuple, list)) or len(made) != 2:
        raise InputError(
            f"the dataset factory {reference!r} must return (train_dataset, val_dataset); "
            f"got {type(made).__name__}"
        )
    train, val = made
    for name, dataset in (("train", train), ("val", val)):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InputError(
                f"the dataset factory {reference!r}: its {name} dataset must be a map-style "
                f"torch Dataset (with __getitem__ and __len__); got {type(dataset).__name__}"
            )
        if len(dataset) == 0:
            raise InputError(f"the dataset factory {reference!r}: its {name} dataset is empty")
    return train, val


def number_of_classes(train: Any, val: Any) -> int:
    """Classes of a pair of datasets: the train set's ``classes`` where it lists them, else
    one more than the highest label of either set (read from ``targets``/``labels`` or,
    where neither is listed, from every item)."""
    classes = getattr(train, "classes", None)
    if classes is not None:
        return len(classes)
    highest = -1
    for dataset in (train, val):
        labels = dataset_labels(dataset)
        if labels is None:
            labels = [int(dataset[index][1]) for index in range(len(dataset))]
        if labels:
            highest = max(highest, max(labels))
    if highest < 1:
        raise InputError(f"the datasets hold {highest + 1} class(es); at least 2 are needed")
    return highest + 1


def image_shape(image: Any, source: str) -> tuple[int, int]:
    """``(channels, size)`` of one square image tensor ``(channels, size, size)``.

    Raises:
        InputError: not a 3-dimensional tensor, or not square.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(
            f"{source} must yield images as (channels, height, width) tensors after the "
            f"transforms; got {shape} (a PIL image needs a transforms preset that makes a tensor)"
        )
    channels, height, width = image.shape
    if height != width:
        raise InputError(
            f"{source} yields {height}×{width} images; square images are needed (crop them, "
            "e.g. --transforms imagenet with --image-size)"
        )
    return int(channels), int(height)


class UserLoaderBatches:
    """The batches of a DataLoader the user built, as training reads them: one pass a epoch.

    A ``DistributedSampler`` (anything with ``set_epoch``) is told the epoch first, so its
    shuffle changes from epoch to epoch as in a plain PyTorch loop.
    """

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader.dataset)  # type: ignore[arg-type]

    @property
    def steps_per_epoch(self) -> int:
        """The loader's batches per epoch (its ``len``)."""
        return len(self.loader)

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """The loader's batches; each must be ``(images, labels)``."""
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]
        for batch in self.loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise InputError(
                    "the training DataLoader must yield (images, labels) batches; got "
                    f"{type(batch).__name__}"
                )
            yield batch[0], batch[1]


def dataset_of(loader: Any, what: str) -> Dataset[Any]:
    """The map-style dataset behind a DataLoader.

    Raises:
        InputError: not a DataLoader, or one over an iterable-style dataset.
    """
    if not isinstance(loader, DataLoader):
        raise InputError(f"{what} must be a torch DataLoader; got {type(loader).__name__}")
    dataset = loader.dataset
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise InputError(f"{what} must read a map-style dataset (with __getitem__ and __len__)")
    return dataset


def steps_per_epoch(train: Any, batch_size: int, world_size: int) -> int:
    """Optimizer steps of one epoch: a user's loader's length, else the images per rank
    divided into batches."""
    steps = getattr(train, "steps_per_epoch", None)
    if steps is not None:
        return int(steps)
    return math.ceil(len(train) / batch_size / world_size)
