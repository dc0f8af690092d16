"""The supernet as an accuracy oracle: BN re-calibration then top-1 on held-out images."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack

import numpy as np
import torch

from eqsearch.errors import InputError
from eqsearch.space import SubnetConfig
from supernet.data.images import Batch, ImageSource, TensorImages, in_memory, on_device
from supernet.evaluation.inference import (
    LAYER_CACHE_BYTES,
    LAYER_CACHE_TOTAL_BYTES,
    LayerOutputCache,
    fast_inference,
)
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet
from supernet.parallel import can_fork, ordered_map
from supernet.quantizers import lsq_kernels
from supernet.runtime import host_path


@torch.no_grad()
def top1_accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500
) -> float:
    """Top-1 accuracy in percent of ``model`` (in its current mode) on the given tensors."""
    return batches_top1(model, zip(images.split(batch_size), labels.split(batch_size), strict=True))


@torch.no_grad()
def batches_top1(model: torch.nn.Module, batches: Iterable[Batch]) -> float:
    """Top-1 accuracy in percent of ``model`` (in its current mode) over ``(images, labels)``
    batches, each copied to the model's device as it comes (``non_blocking``: from pinned
    memory the copy overlaps the work queued before it); one host synchronisation at the end."""
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for image_batch, label_batch in batches:
        prediction = model(image_batch.to(device, non_blocking=True)).argmax(dim=1)
        correct += (prediction == label_batch.to(device, non_blocking=True)).sum()
        seen += len(label_batch)
    return 100.0 * int(correct) / max(1, seen)


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
    """Accuracy of one subnet with freshly re-calibrated BN statistics, on tensors in memory
    (:func:`measure_accuracy` on image sources, which may stream from disk).

    Args:
        supernet, config: the supernet and the subnet to measure (None: full precision).
        images, labels: the images it is scored on.
        calibration_images: the images its BN statistics are re-estimated from.
        batch_size: images per forward, in calibration (it sets the BN statistics: they are
            averaged per batch) and in scoring.
        fast, layer_cache: see :func:`measure_accuracy`.
    """
    return measure_accuracy(
        supernet,
        config,
        TensorImages(images, labels, batch_size),
        TensorImages(calibration_images, None, batch_size),
        fast=fast,
        layer_cache=layer_cache,
    )


def measure_accuracy(
    supernet: Supernet,
    config: SubnetConfig | None,
    scoring: ImageSource,
    calibration: ImageSource,
    *,
    fast: bool = True,
    layer_cache: LayerOutputCache | None = None,
) -> float:
    """Accuracy of one subnet with freshly re-calibrated BN statistics (EQ-Net's protocol:
    BN statistics re-estimated on N training images, top-1 on M scoring images).

    Both image sets are read batch by batch (their own batch size), so a source that
    streams from disk is never held whole in memory. The supernet's BN statistics, active
    subnet and mode are restored afterwards, so this can run in the middle of training.

    Args:
        supernet, config: the supernet and the subnet to measure (None: full precision).
        scoring: the images it is scored on.
        calibration: the images its BN statistics are re-estimated from (their batches set
            the statistics: they are averaged per batch).
        fast: measure in inference mode with each weight quantized once and the inference
            shortcuts of :mod:`supernet.evaluation.inference` (the same score as ``fast=False``, the
            plain forward passes).
        layer_cache: with ``fast``, outputs of layers that read in-memory images themselves,
            kept for the next subnet with the same first-layer choice (see
            :class:`supernet.evaluation.inference.LayerOutputCache`; the same numbers).
    """
    was_training = supernet.training
    with ExitStack() as stack:
        stack.enter_context(preserved_bn_state(supernet))
        stack.enter_context(supernet.using(config))
        if fast:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(fast_inference(supernet, layer_cache))
        calibrate_bn(supernet, calibration.image_batches())
        supernet.eval()
        accuracy = batches_top1(supernet, scoring.batches())
    supernet.train(was_training)
    return accuracy


DEVICE_COPY_FRACTION = 0.25
"""The scoring and calibration images move to a GPU once (a streamed source decoded once,
batch by batch) when they take at most this share of its free memory; otherwise every batch
is copied when it is used."""


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class SupernetOracle:
    """``evaluate(configs)``: top-1 accuracy of each subnet on a fixed held-out set.

    Every config gets fresh BN statistics from the same calibration images, so the same
    config always scores the same; results are cached by config. The images are tensors in
    memory (the constructor) or any :class:`supernet.data.images.ImageSource`
    (:meth:`from_sources`), such as a folder's images streamed from disk.

    Where the images are tensors on a CPU, the outputs of layers that read them themselves
    (the first convolution) are kept for the next subnet with the same choice there
    (:class:`supernet.evaluation.inference.LayerOutputCache`, at most ``LAYER_CACHE_BYTES`` per
    process
    and ``LAYER_CACHE_TOTAL_BYTES`` over the workers). On a GPU the images are copied there
    once where they fit (``DEVICE_COPY_FRACTION``), else batch by batch.

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
            the supernet as it is then; images streamed from disk are measured in this
            process (their DataLoader has worker processes of its own).
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
        if len(images) != len(labels):
            raise InputError("SupernetOracle needs as many labels as images, and at least one")
        self._setup(
            supernet,
            TensorImages(images, labels, batch_size),
            TensorImages(calibration_images, None, batch_size),
            progress,
            workers,
        )

    @classmethod
    def from_sources(
        cls,
        supernet: Supernet,
        scoring: ImageSource,
        calibration: ImageSource,
        *,
        progress: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> SupernetOracle:
        """An oracle that scores on ``scoring`` and re-calibrates BN on ``calibration``
        (each read in its own batches)."""
        oracle = cls.__new__(cls)
        oracle._setup(supernet, scoring, calibration, progress, workers)
        return oracle

    def _setup(
        self,
        supernet: Supernet,
        scoring: ImageSource,
        calibration: ImageSource,
        progress: Callable[[int], None] | None,
        workers: int,
    ) -> None:
        if len(scoring) == 0:
            raise InputError("SupernetOracle needs as many labels as images, and at least one")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"SupernetOracle.workers must be a positive integer; got {workers!r}")
        self.supernet = supernet
        self.space = supernet.space
        self.scoring = scoring
        self.calibration = calibration
        self.progress = progress
        self.workers = workers
        self._cache: dict[SubnetConfig, float] = {}
        self._in_memory = in_memory(scoring) and in_memory(calibration)
        self._layer_cache = (
            LayerOutputCache(
                [scoring.images, calibration.images],  # type: ignore[attr-defined]
                max_bytes=min(LAYER_CACHE_BYTES, LAYER_CACHE_TOTAL_BYTES // workers),
            )
            if self._in_memory
            else None
        )
        self._device_sources: tuple[torch.device, tuple[ImageSource, ImageSource]] | None = None

    def _sources(self) -> tuple[ImageSource, ImageSource]:
        """(scoring, calibration), copied once to the supernet's GPU where they fit in
        ``DEVICE_COPY_FRACTION`` of its free memory (every subnet reads them again)."""
        device = _device_of(self.supernet)
        sources: tuple[ImageSource, ImageSource] = (self.scoring, self.calibration)
        if device.type != "cuda":
            return sources
        if self._device_sources is None or self._device_sources[0] != device:
            size = sum(source.nbytes() for source in sources)
            free, _ = torch.cuda.mem_get_info(device)
            if size <= DEVICE_COPY_FRACTION * free:
                sources = (on_device(sources[0], device), on_device(sources[1], device))
            self._device_sources = (device, sources)
        return self._device_sources[1]

    def score(self, config: SubnetConfig | None) -> float:
        """Accuracy in percent of one subnet (None: the full-precision network), measured
        now in this process and not cached."""
        if config is not None:
            self.space.validate(config)
        return self._measure(config)[0]

    def _measure(self, config: SubnetConfig | None) -> tuple[float, float]:
        started = time.perf_counter()
        scoring, calibration = self._sources()
        accuracy = measure_accuracy(
            self.supernet, config, scoring, calibration, layer_cache=self._layer_cache
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
        device = _device_of(self.supernet)
        results: Iterator[tuple[float, float]]
        if (
            self.workers > 1
            and len(configs) > 1
            and host_path(device)
            and self._in_memory
            and can_fork()
        ):
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
