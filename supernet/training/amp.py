"""Mixed precision of a training step: autocast, the gradient scaler, the scaled backward and
optimizer step."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import torch
from torch import nn

from eqsearch.errors import InputError
from supernet.quantizers import level_conv

AMP_MODES = ("none", "bf16", "fp16")
"""``TrainConfig.amp``: no autocast, bfloat16 or float16 autocast (float16 with a gradient
scaler)."""

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(mode: str) -> None:
    """Raise InputError unless ``mode`` is one of :data:`AMP_MODES`."""
    if mode not in AMP_MODES:
        raise InputError(f"amp must be one of {', '.join(AMP_MODES)}; got {mode!r}")


def autocast(device: torch.device, mode: str) -> AbstractContextManager[Any]:
    """The autocast context of ``mode`` on ``device`` (nothing for ``none``); for ``bf16``
    with the fused LSQ+ convolutions on their levels in bfloat16
    (:mod:`supernet.quantizers.level_conv`)."""
    check_amp(mode)
    if mode == "none":
        return nullcontext()
    stack = ExitStack()
    stack.enter_context(torch.autocast(device.type, dtype=_AMP_DTYPES[mode]))
    if mode == "bf16":
        stack.enter_context(level_conv.bfloat16_levels())
    return stack


def gradient_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for float16 autocast (its gradients underflow without one), else None.

    The scaler skips an optimizer step whose gradients overflowed and lowers its scale; it
    reads one flag per step to decide (a host synchronisation that bfloat16 does not need).
    """
    check_amp(mode)
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()``, scaled by ``scaler`` where there is one."""
    (loss if scaler is None else scaler.scale(loss)).backward()


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    parameters: Sequence[nn.Parameter],
    grad_clip: float | None,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Clip every gradient element to ``±grad_clip`` (unscaled first) and step."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_value_(parameters, grad_clip)
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()
