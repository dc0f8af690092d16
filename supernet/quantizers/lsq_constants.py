"""The numbers an LSQ+ fake quantization computes with: the minimum step, integer zero points, and
a per-tensor entry's constants as Python numbers (host path) or 0-d tensors (device path)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from supernet.runtime import host_path

MIN_STEP = 1e-8


def _float32_reciprocal(value: float) -> float:
    # torch's reference kernels use the float32 reciprocal; match it bit for bit.
    return float(np.float32(1.0) / np.float32(value))


def integer_zero_point(step: float, offset: float | None, qmin: int, qmax: int) -> int:
    """Integer zero point of a per-tensor (step, offset) pair on the grid [qmin, qmax].

    ``round(−β/s)`` clamped to the grid (an infinite ratio to its end point); a NaN step or
    offset gives the zero point 0 clamped to the grid (every output is NaN then anyway).
    """
    if offset is None:
        return 0
    ratio = -offset / step
    if math.isnan(ratio):
        ratio = 0.0
    return round(min(max(ratio, qmin), qmax))


Sum = float | torch.Tensor
"""A reduction over a tensor: a Python float on the host path, a 0-d tensor on the device path
(:func:`supernet.runtime.host_path`)."""

Level = int | torch.Tensor
"""A grid bound or zero point: a Python int on the host path, a 0-d tensor on the device path."""


def as_sum(total: torch.Tensor) -> Sum:
    """A 0-d reduction as a :data:`Sum`: a Python float on the host path (the gradient
    arithmetic after it is then on floats, not on 0-d tensors: each tensor op costs tens of
    µs between two convolutions), the tensor itself on the device path (no host
    synchronisation)."""
    return total.item() if host_path(total) else total


class PerTensorConstants(NamedTuple):
    """The numbers a per-tensor fake quantization computes with: Python numbers on the host
    path, 0-d tensors on the device path (read without a host synchronisation)."""

    step: Sum
    reciprocal: Sum
    low: Level
    high: Level
    zero_point: Level
    learned_step: Sum
    """The step as learned, before clamping and rounding (the chain factor of a log step)."""

    @property
    def on_host(self) -> bool:
        """Whether the constants are Python numbers (the host path)."""
        return not isinstance(self.step, torch.Tensor)

    def numbers(self) -> HostNumbers | None:
        """The constants as Python numbers (for the CPU kernels), None on the device path."""
        if not self.on_host:
            return None
        return HostNumbers(
            float(self.step),
            float(self.reciprocal),
            int(self.low),
            int(self.high),
            int(self.zero_point),
        )


class HostNumbers(NamedTuple):
    """:class:`PerTensorConstants` on the host path, as the CPU kernels take them."""

    step: float
    reciprocal: float
    low: int
    high: int
    zero_point: int


def per_tensor_constants(
    step: torch.Tensor, offset: torch.Tensor | None, qmin: int, qmax: int, dtype: torch.dtype
) -> PerTensorConstants:
    """The step (float32-rounded for float32 tensors), its reciprocal, the shifted grid
    ``[qmin − z, qmax − z]`` and the integer zero point ``z`` of one per-tensor entry.

    On the host path they are read as Python numbers; on the device path they stay 0-d
    tensors on the step's device, computed with the same roundings (the zero point in
    float64, as Python computes it), so both paths quantize alike.
    """
    if not host_path(step):
        return _device_constants(step, offset, qmin, qmax, dtype)
    learned_step = float(step.detach().item())
    offset_value = None if offset is None else float(offset.detach().item())
    step_value = max(learned_step, MIN_STEP)  # NaN stays NaN (max keeps its first argument)
    if offset_value is not None and math.isnan(offset_value):
        step_value = math.nan  # (x − β)/s is NaN everywhere: so is every output and gradient
    if dtype == torch.float64:
        reciprocal = 1.0 / step_value
    else:
        step_value = float(np.float32(step_value))
        reciprocal = _float32_reciprocal(step_value)
    zero_point = integer_zero_point(step_value, offset_value, qmin, qmax)
    return PerTensorConstants(
        step_value, reciprocal, qmin - zero_point, qmax - zero_point, zero_point, learned_step
    )


def _device_constants(
    step: torch.Tensor, offset: torch.Tensor | None, qmin: int, qmax: int, dtype: torch.dtype
) -> PerTensorConstants:
    learned_step = step.detach().reshape(())
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    step_value = learned_step.to(wide).clamp_min(MIN_STEP)
    reciprocal = torch.reciprocal(step_value)
    if offset is None:  # the bounds as tensors too: compiled functions then take any grid
        low, high = step_value.new_full((), qmin), step_value.new_full((), qmax)
        return PerTensorConstants(step_value, reciprocal, low, high, 0, learned_step)
    zero_point = (
        torch.round(-offset.detach().reshape(()).double() / step_value.double())
        .clamp_(qmin, qmax)
        .to(wide)
    )
    return PerTensorConstants(
        step_value, reciprocal, qmin - zero_point, qmax - zero_point, zero_point, learned_step
    )
