"""The per-tensor fake quantization's element-wise chains on the device path, as compilable units.

On the device path (:func:`supernet.runtime.host_path` is False) the quantizers' constants are
0-d tensors and these chains are torch ops: multiply, round and clamp forward; the clip mask
and its two sums backward. Inside :func:`supernet.runtime.compiled_quantizers` each chain runs
as one ``torch.compile``d function, one pass over the tensor instead of four to six. The
tensors go in as flat views of their memory (element-wise work does not depend on the shape),
so one compiled graph per dtype serves every layer: shapes with dimensions of size 1 (1×1 and
depth-wise kernels) would otherwise each compile a graph of their own.
"""

from __future__ import annotations

from typing import Any

import torch

from supernet.runtime import compiled


def _levels(x: torch.Tensor, reciprocal: Any, low: Any, high: Any) -> torch.Tensor:
    out = x * reciprocal
    out.round_()
    out.clamp_(low, high)
    return out


def levels(x: torch.Tensor, reciprocal: Any, low: Any, high: Any) -> torch.Tensor:
    """``clamp(round(x · reciprocal), low, high)`` (one multiply into a new tensor, two
    passes in place: the host path's torch fallback and the device path alike)."""
    return _levels(x, reciprocal, low, high)


@compiled
def _flat_levels(x: torch.Tensor, reciprocal: Any, low: Any, high: Any) -> torch.Tensor:
    return _levels(x, reciprocal, low, high)


@compiled
def _flat_forward(x: torch.Tensor, reciprocal: Any, low: Any, high: Any, step: Any) -> torch.Tensor:
    return _levels(x, reciprocal, low, high).mul_(step)


def _masked(grad: torch.Tensor, x: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    # The host path's test: grad where x is strictly inside the bounds, else 0 (NaN x is
    # outside, as in the CPU kernels and torch's vectorised hardtanh_backward); the 0 is
    # low − low, NaN where a NaN or infinite step made the bounds NaN, so that such a step's
    # gradients are NaN everywhere, as autograd of round(clamp(x/s))·s gives. One pass.
    return torch.where((x > low) & (x < high), grad, low - low)


@compiled
def _flat_mask(grad: torch.Tensor, x: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    return _masked(grad, x, low, high)


@compiled
def _flat_mask_and_sums(
    grad: torch.Tensor, x: torch.Tensor, low: Any, high: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    masked = _masked(grad, x, low, high)
    return masked, (masked * x).sum(), grad.sum() - masked.sum()


def _dense(tensor: torch.Tensor) -> bool:
    return tensor.is_contiguous() or (
        tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)
    )


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """A dense tensor's elements in memory order, as a 1-d view."""
    return tensor.as_strided((tensor.numel(),), (1,))


def _shaped(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A new 1-d tensor ``flat`` viewed with ``like``'s shape and strides."""
    return flat.as_strided(like.shape, like.stride())


def device_levels(x: torch.Tensor, reciprocal: Any, low: Any, high: Any) -> torch.Tensor:
    """:func:`levels` on the device path (0-d tensor constants)."""
    if not _dense(x):
        x = x.contiguous()
    return _shaped(_flat_levels(_flat(x), reciprocal, low, high), x)


def device_forward(
    x: torch.Tensor, reciprocal: Any, low: Any, high: Any, step: Any
) -> torch.Tensor:
    """``step · clamp(round(x · reciprocal), low, high)`` on the device path."""
    if not _dense(x):
        x = x.contiguous()
    return _shaped(_flat_forward(_flat(x), reciprocal, low, high, step), x)


def _pair(grad: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # two tensors of one memory layout (the element-wise work pairs them element by element)
    if grad.stride() == x.stride() and _dense(x):
        return grad, x
    return grad.contiguous(), x.contiguous()


def device_mask(grad: torch.Tensor, x: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """``grad`` zeroed where ``x`` is at or beyond ``low`` or ``high`` (a new tensor)."""
    grad, x = _pair(grad, x)
    return _shaped(_flat_mask(_flat(grad), _flat(x), low, high), grad)


def device_mask_and_sums(
    grad: torch.Tensor, x: torch.Tensor, low: Any, high: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`device_mask`, ``Σ g·m·x`` and ``Σ g·(1 − m)`` (0-d tensors), in one pass when
    compiled."""
    grad, x = _pair(grad, x)
    masked, inside, clipped = _flat_mask_and_sums(_flat(grad), _flat(x), low, high)
    return _shaped(masked, grad), inside, clipped
