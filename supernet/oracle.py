"""The supernet as an accuracy oracle: BN re-calibration then top-1 on held-out images."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack

import numpy as np
import torch

from eqsearch.errors import InputError
from eqsearch.space import SubnetConfig
from supernet import lsq_kernels
from supernet.calibrate import calibrate_bn, preserved_bn_state
from supernet.elastic import Supernet
from supernet.inference import (
    LAYER_CACHE_BYTES,
    LAYER_CACHE_TOTAL_BYTES,
    LayerOutputCache,
    fast_inference,
)
from supernet.parallel import can_fork, ordered_map
from supernet.runtime import host_path


@torch.no_grad()
def top1_accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500
) -> float:
    """Top-1 accuracy in percent of ``model`` (in its current mode) on the given tensors."""
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for image_batch, label_batch in zip(
        images.split(batch_size), labels.split(batch_size), strict=True
    ):
        prediction = model(image_batch.to(device)).argmax(dim=1)
        correct += (prediction == label_batch.to(device)).sum()
    return 100.0 * int(correct) / max(1, len(labels))


def subnet_accuracy(
    supernet: Supernet,
    config: SubnetConfig | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    calibration_images: torch.Tensor,
    *,
    batch_size: int = 500,
    fast: bool = True,
    layer_cache: LayerOutputCache | None = None,
) -> float:
    """Accuracy of one subnet with freshly re-calibrated BN statistics.

    The supernet's BN statistics, active subnet and mode are restored afterwards, so this can
    run in the middle of training.

    Args:
        supernet, config: the supernet and the subnet to measure (None: full precision).
        images, labels: the images it is scored on.
        calibration_images: the images its BN statistics are re-estimated from.
        batch_size: images per forward, in calibration (it sets the BN statistics: they are
            averaged per batch) and in scoring.
        fast: measure in inference mode with each weight quantized once and the inference
            shortcuts of :mod:`supernet.inference` (the same score as ``fast=False``, the
            plain forward passes).
        layer_cache: with ``fast``, outputs of layers that read the images themselves, kept
            for the next subnet with the same first-layer choice (see
            :class:`supernet.inference.LayerOutputCache`; the same numbers).
    """
    was_training = supernet.training
    with ExitStack() as stack:
        stack.enter_context(preserved_bn_state(supernet))
        stack.enter_context(supernet.using(config))
        if fast:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(fast_inference(supernet, layer_cache))
        calibrate_bn(supernet, calibration_images, batch_size=batch_size)
        supernet.eval()
        accuracy = top1_accuracy(supernet, images, labels, batch_size=batch_size)
    supernet.train(was_training)
    return accuracy


DEVICE_COPY_FRACTION = 0.25
"""The scoring and calibration images move to a GPU once when they take at most this share
of its free memory; otherwise every batch is copied when it is used."""


class SupernetOracle:
    """``evaluate(configs)``: top-1 accuracy of each subnet on a fixed held-out set.

    Every config gets fresh BN statistics from the same calibration images, so the same
    config always scores the same; results are cached by config. On a CPU, the outputs of
    layers that read the images themselves (the first convolution) are kept for the next
    subnet with the same choice there (:class:`supernet.inference.LayerOutputCache`, at most
    ``LAYER_CACHE_BYTES`` per process and ``LAYER_CACHE_TOTAL_BYTES`` over the workers).

    Args:
        supernet: a trained supernet.
        images, labels: the held-out evaluation set (the paper scores subnets on training
            images, not on the test set).
        calibration_images: images for BN re-calibration (fixed order).
        batch_size: evaluation batch size.
        progress: called with the number of configs evaluated so far, after each one.
        workers: CPU worker processes that measure configs side by side, one torch thread
            each (see :mod:`supernet.parallel`); 1 measures in this process. Workers are
            forked for each call that has more than one config to measure, so they always see
            the supernet as it is then.
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
        workers: int = 1,
    ) -> None:
        if len(images) != len(labels) or len(images) == 0:
            raise InputError("SupernetOracle needs as many labels as images, and at least one")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"SupernetOracle.workers must be a positive integer; got {workers!r}")
        self.supernet = supernet
        self.space = supernet.space
        self.images = images
        self.labels = labels
        self.calibration_images = calibration_images
        self.batch_size = batch_size
        self.progress = progress
        self.workers = workers
        self._cache: dict[SubnetConfig, float] = {}
        self._layer_cache = LayerOutputCache(
            [images, calibration_images],
            max_bytes=min(LAYER_CACHE_BYTES, LAYER_CACHE_TOTAL_BYTES // workers),
        )
        self._device_tensors: tuple[torch.device, tuple[torch.Tensor, ...]] | None = None

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        """(images, labels, calibration images), copied once to the supernet's GPU where
        they fit in a quarter of its free memory (every subnet reads them again)."""
        device = next(self.supernet.parameters()).device
        tensors: tuple[torch.Tensor, ...] = (self.images, self.labels, self.calibration_images)
        if device.type != "cuda":
            return tensors
        if self._device_tensors is None or self._device_tensors[0] != device:
            size = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
            free, _ = torch.cuda.mem_get_info(device)
            if size <= DEVICE_COPY_FRACTION * free:
                tensors = tuple(tensor.to(device) for tensor in tensors)
            self._device_tensors = (device, tensors)
        return self._device_tensors[1]

    def _measure(self, config: SubnetConfig) -> tuple[float, float]:
        started = time.perf_counter()
        images, labels, calibration_images = self._tensors()
        accuracy = subnet_accuracy(
            self.supernet,
            config,
            images,
            labels,
            calibration_images,
            batch_size=self.batch_size,
            layer_cache=self._layer_cache,
        )
        return accuracy, time.perf_counter() - started

    def measure_in_order(
        self, configs: Sequence[SubnetConfig]
    ) -> Generator[tuple[float, float], None, None]:
        """``(accuracy %, seconds)`` of each config, measured now and yielded in order as
        they complete (across the workers when there are several); each fills the cache.

        Raises:
            ValueError: a config is not in the supernet's space (before anything runs).
        """
        configs = list(configs)
        for config in configs:
            self.space.validate(config)
        device = next(self.supernet.parameters()).device
        results: Iterator[tuple[float, float]]
        if self.workers > 1 and len(configs) > 1 and host_path(device) and can_fork():
            lsq_kernels.warm_up()  # compiled once here, not in every worker
            results = ordered_map(self._measure, configs, min(self.workers, len(configs)))
        else:
            results = map(self._measure, configs)
        try:
            for config, (accuracy, seconds) in zip(configs, results, strict=True):
                self._cache[config] = accuracy
                yield accuracy, seconds
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        """Accuracy in percent of every config (validated against the supernet's space)."""
        configs = list(configs)
        for config in configs:
            self.space.validate(config)
        missing = list(dict.fromkeys(c for c in configs if c not in self._cache))
        measured = self.measure_in_order(missing)
        result = np.empty(len(configs), dtype=np.float64)
        try:
            for row, config in enumerate(configs):
                if config not in self._cache:  # the next one measured, in first-seen order
                    next(measured)
                result[row] = self._cache[config]
                if self.progress is not None:
                    self.progress(row + 1)
        finally:
            measured.close()
        return result
