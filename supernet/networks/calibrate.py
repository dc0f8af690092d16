"""Batch-norm re-calibration: re-estimate running statistics for the active subnet."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from eqsearch.errors import InputError

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _NORM_TYPES)]


@torch.no_grad()
def calibrate_bn(
    model: nn.Module,
    images: torch.Tensor | Iterable[torch.Tensor],
    *,
    batch_size: int = 256,
) -> int:
    """Reset every BN layer's running statistics and re-estimate them over ``images``.

    The statistics become the cumulative average over all calibration batches (momentum
    None), with BN layers in training mode and every other module in eval mode (dropout and
    stochastic depth off). The model's modes are restored afterwards; it is left with the new
    statistics. Returns the number of images seen.

    Args:
        model: the network, already switched to the subnet to calibrate.
        images: a tensor of images (split into ``batch_size`` chunks) or an iterable of
            image batches (such as an image source's ``image_batches()``, which may stream
            them from disk); each is copied to the model's device as it comes
            (``non_blocking``, which overlaps the copy from pinned memory).
        batch_size: chunk size when ``images`` is a tensor.
    """
    norms = _norms(model)
    if not norms:
        return 0
    modes = {module: module.training for module in model.modules()}
    momenta = {norm: norm.momentum for norm in norms}
    device = next(model.parameters()).device
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    chunks: Iterable[torch.Tensor] = (
        images.split(batch_size) if isinstance(images, torch.Tensor) else images
    )
    seen = 0
    try:
        for chunk in chunks:
            model(chunk.to(device, non_blocking=True))
            seen += len(chunk)
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for module, training in modes.items():
            module.training = training
    if seen == 0:
        raise InputError("calibrate_bn needs at least one image")
    return seen


@contextmanager
def preserved_bn_state(model: nn.Module) -> Iterator[None]:
    """Context manager: BN running statistics are restored on exit (evaluation mid-training)."""
    norms = _norms(model)
    saved = [
        (
            norm.running_mean.clone() if norm.running_mean is not None else None,
            norm.running_var.clone() if norm.running_var is not None else None,
            norm.num_batches_tracked.clone() if norm.num_batches_tracked is not None else None,
        )
        for norm in norms
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(norms, saved, strict=True):
                if mean is not None and norm.running_mean is not None:
                    norm.running_mean.copy_(mean)
                if var is not None and norm.running_var is not None:
                    norm.running_var.copy_(var)
                if count is not None and norm.num_batches_tracked is not None:
                    norm.num_batches_tracked.copy_(count)
