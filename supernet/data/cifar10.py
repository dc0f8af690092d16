"""CIFAR-10 from its local python batch files, read without running pickled code."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from eqsearch.errors import InputError
from supernet.data.bundle import DataBundle
from supernet.data.folders import require_dir
from supernet.data.spec import DataSpec
from supernet.data.streamed import loader_bundle
from supernet.data.transforms import preset_normalization, preset_transforms

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


def cifar10_bundle(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    """The bundle of CIFAR-10's python batches under ``spec.root/cifar-10-batches-py``."""
    root = str(spec.root)
    require_dir(root, "CIFAR-10 data root")
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
    return loader_bundle(
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
