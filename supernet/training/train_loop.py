"""What surrounds a training step's forward and backward: mixed precision, the optimizer step, and
the loss terms read back one step late."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import torch
from torch import nn

from eqsearch.errors import InputError
from supernet.quantizers import level_conv
from supernet.runtime import host_path

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


Check = Callable[[dict[str, torch.Tensor], int], None]
"""Raises for non-finite loss terms of a step: ``check(terms, step)``."""


class LaggedLosses:
    """The loss terms of an epoch's steps, checked and summed on the host one step late.

    Each step's terms are copied to the host as they are queued (one non-blocking copy into
    pinned memory and an event, on a GPU); the next step, once its own work is queued, waits
    for that event only and then checks and sums them there. Reading a GPU value at once
    would make the host wait for all queued work and leave the GPU idle until the next step's
    first kernels arrive; this way the loop never waits for the step it has just queued. On
    the host path (CPU tensors) the terms are checked as soon as they are added.

    Args:
        check: raises for a step's non-finite terms (called with host tensors).
        lagged: read one step late (the device path); False: at once.
    """

    def __init__(self, check: Check, *, lagged: bool) -> None:
        self.check = check
        self.lagged = lagged
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self._pending: tuple[list[str], torch.Tensor, Any, int] | None = None

    @classmethod
    def for_device(cls, check: Check, device: torch.device) -> LaggedLosses:
        """Lagged wherever the host path does not run."""
        return cls(check, lagged=not host_path(device))

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Queue ``terms`` (0-d tensors) of ``step``; checks and sums the previous step's
        (or, unlagged, these)."""
        names = list(terms)
        stacked = torch.stack([value.detach().reshape(()).float() for value in terms.values()])
        event = None
        if stacked.device.type == "cuda":
            stacked = stacked.to("cpu", non_blocking=True)  # into pinned memory
            event = torch.cuda.Event()
            event.record()
        elif stacked.device.type != "cpu":
            stacked = stacked.cpu()
        previous, self._pending = self._pending, (names, stacked, event, step)
        if previous is not None:
            self._settle(*previous)
        if not self.lagged:
            self.flush()

    def flush(self) -> None:
        """Check and sum the step still pending (at the end of an epoch)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._settle(*pending)

    def _settle(self, names: list[str], stacked: torch.Tensor, event: Any, step: int) -> None:
        if event is not None:
            event.synchronize()
        self.check(dict(zip(names, stacked.unbind(), strict=True)), step)
        for name, value in zip(names, stacked.unbind(), strict=True):
            total = self.sums.get(name)
            self.sums[name] = value.double() if total is None else total + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, group: Callable[[str], str] = lambda name: name) -> dict[str, float]:
        """Each group's mean over its terms' values (one read of all sums)."""
        self.flush()
        names = list(self.sums)
        if not names:
            return {}
        values = torch.stack(list(self.sums.values())).tolist()
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for name, value in zip(names, values, strict=True):
            key = group(name)
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + self.counts[name]
        return {key: totals[key] / counts[key] for key in totals}
