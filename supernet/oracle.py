"""The supernet as an accuracy oracle: BN re-calibration then top-1 on held-out images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqsearch.space import SubnetConfig
from supernet.calibrate import calibrate_bn, preserved_bn_state
from supernet.elastic import Supernet


@torch.no_grad()
def top1_accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500
) -> float:
    """Top-1 accuracy in percent of ``model`` (in its current mode) on the given tensors."""
    device = next(model.parameters()).device
    correct = 0
    for image_batch, label_batch in zip(
        images.split(batch_size), labels.split(batch_size), strict=True
    ):
        prediction = model(image_batch.to(device)).argmax(dim=1).cpu()
        correct += int((prediction == label_batch).sum())
    return 100.0 * correct / max(1, len(labels))


def subnet_accuracy(
    supernet: Supernet,
    config: SubnetConfig | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    calibration_images: torch.Tensor,
    *,
    batch_size: int = 500,
) -> float:
    """Accuracy of one subnet with freshly re-calibrated BN statistics.

    The supernet's BN statistics, active subnet and mode are restored afterwards, so this can
    run in the middle of training.
    """
    was_training = supernet.training
    with preserved_bn_state(supernet), supernet.using(config):
        calibrate_bn(supernet, calibration_images, batch_size=batch_size)
        supernet.eval()
        accuracy = top1_accuracy(supernet, images, labels, batch_size=batch_size)
    supernet.train(was_training)
    return accuracy


class SupernetOracle:
    """``evaluate(configs)``: top-1 accuracy of each subnet on a fixed held-out set.

    Every config gets fresh BN statistics from the same calibration images, so the same
    config always scores the same; results are cached by config.

    Args:
        supernet: a trained supernet.
        images, labels: the held-out evaluation set (the paper scores subnets on training
            images, not on the test set).
        calibration_images: images for BN re-calibration (fixed order).
        batch_size: evaluation batch size.
        progress: called with the number of configs evaluated so far, after each one.
    """

    def __init__(
        self,
        supernet: Supernet,
        images: torch.Tensor,
        labels: torch.Tensor,
        calibration_images: torch.Tensor,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError("SupernetOracle needs as many labels as images, and at least one")
        self.supernet = supernet
        self.space = supernet.space
        self.images = images
        self.labels = labels
        self.calibration_images = calibration_images
        self.batch_size = batch_size
        self.progress = progress
        self._cache: dict[SubnetConfig, float] = {}

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        """Accuracy in percent of every config (validated against the supernet's space)."""
        configs = list(configs)
        for config in configs:
            self.space.validate(config)
        result = np.empty(len(configs), dtype=np.float64)
        for row, config in enumerate(configs):
            accuracy = self._cache.get(config)
            if accuracy is None:
                accuracy = subnet_accuracy(
                    self.supernet,
                    config,
                    self.images,
                    self.labels,
                    self.calibration_images,
                    batch_size=self.batch_size,
                )
                self._cache[config] = accuracy
            result[row] = accuracy
            if self.progress is not None:
                self.progress(row + 1)
        return result
