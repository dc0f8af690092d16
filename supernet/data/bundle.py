"""The data of one run: training batches, the test split, held-out and calibration slices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eqsearch.errors import InputError
from supernet.data.batches import BatchSource
from supernet.data.images import Batch, ImageSource
from supernet.data.spec import DataSpec

SPLITS = ("test", "holdout")
SPLIT_SEED = 20231001
"""Train/test splits and held-out slices are fixed, independent of the training seed, so that
every run and every checkpoint evaluates on the same images."""

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel ``(mean, std)`` of image normalisation."""


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
            return self.train_plain.subset(holdout_indices(len(self.train_plain), count).tolist())
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


def assemble_bundle(
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
        holdout=train_plain.subset(holdout_indices(n_train, spec.holdout).tolist()),
        calibration=train_plain.subset(torch.randperm(n_train, generator=generator).tolist()),
        normalization=normalization,
    )


def holdout_indices(n: int, count: int) -> np.ndarray:
    """The fixed, sorted indices of ``count`` held-out images among ``n`` training images."""
    rng = np.random.default_rng(SPLIT_SEED + 1)
    return np.sort(rng.permutation(n)[: min(count, n)])
