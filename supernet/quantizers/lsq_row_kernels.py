"""One-pass LSQ+ per-channel fake quantization of weights and its gradients (numba), equal to the
torch path.

The kernels work on the rows of one flat buffer (:class:`Rows`): one layer's channels, or the
channels of every layer whose weights a training step quantizes together
(:mod:`supernet.quantizers.lsq_weights`). The forward also writes the int8 levels the training
forward's integer convolution reads (:mod:`supernet.quantizers.integer_conv`); the backward
recomputes the forward's values from the weight and three constants per row and returns the
step and offset gradients. They serve contiguous float32 CPU tensors (numba compiles them on
first use, :func:`supernet.quantizers.lsq_kernels.available`); anything else stays on the torch
path.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from supernet.quantizers.lsq_kernels import available
from supernet.quantizers.numba_kernels import NumbaKernels, plain_jit
from supernet.runtime import host_path


def _per_channel_kernel(
    weight: Any,
    bounds: Any,
    step: Any,
    offset: Any,
    has_offset: Any,
    qmin: Any,
    qmax: Any,
    minimum_step: Any,
    out: Any,
    constants: Any,
    levels: Any,
) -> int:
    # per_channel_forward's float32 operations in its order, one row (channel) of the flat
    # weight at a time: the step clamped to the minimum step, its reciprocal, the zero point
    # round(−β/s) clamped to the grid (0 without an offset); then w·(1/s), round half to
    # even, + z, clamp to the grid, − z, ·s (NaN stays NaN); and level − z as int8 (clamped
    # to int8: exact for grids within it, which a symmetric weight's integer convolution
    # reads; 0 for NaN, counted and returned: the levels are then meaningless)
    not_a_number = 0
    for row in range(bounds.size - 1):
        size = step[row]
        if size < minimum_step:
            size = minimum_step
        inverse = np.float32(1.0) / size
        low, high = qmin[row], qmax[row]
        zero_point = np.float32(0.0)
        if has_offset[row]:
            zero_point = np.rint(-offset[row] / size)
            if zero_point < low:
                zero_point = low
            elif zero_point > high:
                zero_point = high
        constants[row, 0] = size
        constants[row, 1] = inverse
        constants[row, 2] = zero_point
        # the row as slices indexed from 0: LLVM then knows the indices are not negative
        # (no wraparound test per element) and vectorizes the loop, ten times faster
        begin, end = bounds[row], bounds[row + 1]
        row_weight, row_out = weight[begin:end], out[begin:end]
        row_levels = levels[begin:end]
        for index in range(end - begin):
            level = np.rint(row_weight[index] * inverse) + zero_point
            if level < low:
                level = low
            elif level > high:
                level = high
            shifted = level - zero_point
            row_out[index] = shifted * size
            not_a_number += shifted != shifted
            if shifted != shifted:
                shifted = np.float32(0.0)
            row_levels[index] = np.int8(min(max(shifted, np.float32(-128.0)), np.float32(127.0)))
    return not_a_number


def _per_channel_gradient_kernel(
    grad: Any,
    weight: Any,
    bounds: Any,
    constants: Any,
    has_offset: Any,
    qmin: Any,
    qmax: Any,
    grad_scale: Any,
    chain: Any,
    grad_step: Any,
    grad_offset: Any,
    totals: Any,
) -> None:
    # per row, the forward's values again from the weight and the constants (cheaper than
    # reading them back from memory): Σ g·out, then the mask of the shifted scale
    # x·(1/s) + z strictly inside (qmin, qmax) written into grad, Σ g·m·x and Σ g·(1−m), in
    # float64; from them the step and offset gradients (the step's times its chain factor).
    # A row whose step is NaN or infinite, or whose zero point is NaN (a NaN offset), gets NaN
    # gradients throughout: NaN in, NaN out (autograd of round(clamp(x/s))·s multiplies the
    # mask by (1/s)·s, NaN for such a step).
    for row in range(bounds.size - 1):
        size, inverse, zero_point = constants[row, 0], constants[row, 1], constants[row, 2]
        low, high = qmin[row], qmax[row]
        grad_dot_out = 0.0
        inside_sum = 0.0
        clipped_sum = 0.0
        begin, end = bounds[row], bounds[row + 1]
        row_weight, row_grad = weight[begin:end], grad[begin:end]  # see _per_channel_kernel
        if not abs(size) < np.inf or zero_point != zero_point:
            for index in range(end - begin):
                row_grad[index] = np.nan
            grad_step[row] = np.nan
            grad_offset[row] = np.nan
            totals[row] = np.nan
            continue
        for index in range(end - begin):
            value = row_weight[index]
            scaled = value * inverse
            level = np.rint(scaled) + zero_point
            if level < low:
                level = low
            elif level > high:
                level = high
            gradient = row_grad[index]
            grad_dot_out += gradient * ((level - zero_point) * size)
            shifted = scaled + zero_point
            kept = gradient if (shifted > low) & (shifted < high) else np.float32(0.0)
            row_grad[index] = kept
            inside_sum += kept * value
            clipped_sum += gradient - kept
        step_gradient = (grad_dot_out - inside_sum) / size
        if has_offset[row]:
            step_gradient += zero_point * clipped_sum
            grad_offset[row] = clipped_sum * grad_scale[row]
        grad_step[row] = step_gradient * grad_scale[row] * chain[row]
        totals[row] = grad_dot_out


def _compile(numba: Any) -> dict[str, Any]:
    return {
        "per_channel": plain_jit(numba)(_per_channel_kernel),
        "per_channel_gradient": plain_jit(numba, fastmath={"reassoc"})(
            _per_channel_gradient_kernel
        ),
    }


KERNELS = NumbaKernels(_compile, "the per-channel LSQ CPU kernels")


class Rows(NamedTuple):
    """The per-channel rows of one flat weight buffer (one layer's channels, or several
    layers' one after another) and each row's integer grid."""

    bounds: np.ndarray
    """int64, ``rows + 1``: row ``r`` is ``flat[bounds[r]:bounds[r + 1]]``."""
    qmin: np.ndarray
    qmax: np.ndarray
    has_offset: np.ndarray
    """bool per row: the row's entry has a learnable offset (else its zero point is 0)."""

    @property
    def row_count(self) -> int:
        """The number of rows."""
        return int(self.bounds.size - 1)


@functools.lru_cache(maxsize=4096)
def layer_rows(layers: tuple[tuple[int, int, int, int, bool], ...]) -> Rows:
    """The rows of layers laid out one after another, each given as
    ``(channels, values per channel, qmin, qmax, has offset)``; cached (read-only arrays)."""
    lengths = np.concatenate([np.full(layer[0], layer[1], dtype=np.int64) for layer in layers])
    bounds = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])

    def per_row(position: int, dtype: Any) -> np.ndarray:
        values = np.concatenate(
            [np.full(layer[0], layer[position], dtype=dtype) for layer in layers]
        )
        values.setflags(write=False)
        return values

    bounds.setflags(write=False)
    return Rows(bounds, per_row(2, np.float32), per_row(3, np.float32), per_row(4, np.bool_))


def per_channel_servable(weight: torch.Tensor) -> bool:
    """Whether the per-channel kernels serve ``weight``: a contiguous float32 CPU tensor, off
    the forced device path."""
    return (
        weight.dtype == torch.float32
        and host_path(weight)
        and weight.is_contiguous()
        and available()
    )


class QuantizedRows(NamedTuple):
    """What :func:`quantize_rows` returns."""

    out: torch.Tensor
    """The flat fake-quantized values."""
    constants: torch.Tensor
    """``(rows, 3)`` float32: each row's clamped step, its reciprocal and its zero point."""
    levels: torch.Tensor
    """The flat int8 levels ``out / step`` (clamped to int8: exact for a grid within it and a
    zero point of 0)."""
    not_a_number: int
    """How many values were NaN (their levels are 0, meaningless)."""


def quantize_rows(
    weight: torch.Tensor,
    rows: Rows,
    step: torch.Tensor,
    minimum_step: float,
    offset: torch.Tensor,
) -> QuantizedRows:
    """``s·(clamp(round(w·(1/s)) + z, qmin, qmax) − z)`` for every row, in one pass.

    Args:
        weight: the flat weight values (contiguous float32, without autograd).
        rows: their rows and grids.
        step: each row's float32 step as learned (clamped to ``minimum_step`` here).
        offset: each row's float32 offset β (read only where the row has one).

    Returns:
        The flat fake-quantized weight, each row's constants, the int8 levels and how many
        values were NaN (:class:`QuantizedRows`).
    """
    out = torch.empty_like(weight)
    constants = torch.empty((rows.row_count, 3), dtype=weight.dtype)
    levels = torch.empty_like(weight, dtype=torch.int8)
    not_a_number = KERNELS["per_channel"](
        weight.numpy(),
        rows.bounds,
        step.detach().numpy(),
        offset.detach().numpy(),
        rows.has_offset,
        rows.qmin,
        rows.qmax,
        np.float32(minimum_step),
        out.numpy(),
        constants.numpy(),
        levels.numpy(),
    )
    return QuantizedRows(out, constants, levels, not_a_number)


def row_gradients(
    grad: torch.Tensor,
    weight: torch.Tensor,
    rows: Rows,
    constants: torch.Tensor,
    grad_scale: np.ndarray,
    chain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Mask ``grad`` in place (the per-channel clip test) and compute every row's gradients.

    Args:
        grad, weight: flat contiguous float32 tensors of one size (``grad`` is overwritten
            with ``grad · m``).
        rows: their rows and grids; constants: :func:`quantize_rows`'s.
        grad_scale: LSQ's gradient scale per row (float64).
        chain: a factor per row for the step gradient (the step itself, for a step learned as
            its logarithm), or None.

    Returns:
        ``(grad_step, grad_offset, totals)``: float32 gradients per row from float64 sums
        ``Σ g·out``, ``Σ g·m·w`` and ``Σ g·(1−m)`` (``g`` the gradient before masking; a
        row without an offset leaves its ``grad_offset`` value unset), and each row's
        ``Σ g·out`` (float64).
    """
    grad_step = torch.empty(rows.row_count, dtype=weight.dtype)
    grad_offset = torch.empty(rows.row_count, dtype=weight.dtype)
    totals = np.empty(rows.row_count)
    factors = np.ones(rows.row_count, np.float32) if chain is None else chain.detach().numpy()
    KERNELS["per_channel_gradient"](
        grad.numpy(),
        weight.numpy(),
        rows.bounds,
        constants.numpy(),
        rows.has_offset,
        rows.qmin,
        rows.qmax,
        grad_scale,
        factors,
        grad_step.numpy(),
        grad_offset.numpy(),
        totals,
    )
    return grad_step, grad_offset, totals
