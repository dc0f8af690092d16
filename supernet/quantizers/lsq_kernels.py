"""One-pass LSQ+ per-tensor fake quantization and its backward (numba), equal to the torch path.

The torch forward makes four passes over an activation (multiply into a new tensor, round,
clamp, multiply); one compiled loop does the same float32 operations in one pass, three times
faster (2.2 ms against 7.0 ms for a 500×16×32×32 batch on one thread). The backward's clip mask
and its two sums (``Σ g·m·x`` and ``Σ g·(1−m)``) are one more pass that writes the masked
gradient in place, where torch needs a mask pass and two reductions (on one thread; on several
torch's passes are faster: ``fake_quant.mask_takes_kernel``). The activations'
fake quantization is memory-bound on CPUs, so passes are what a training step pays for. The
kernels serve dense float32 CPU tensors; anything else stays on the torch path. Large tensors
are split over ``torch.get_num_threads()`` slices run by numba's parallel mode, as the N2UQ
kernels are (see :mod:`supernet.quantizers.n2uq_kernels`). For the training forward's integer
convolution (:mod:`supernet.quantizers.integer_conv`) the activation kernel can also write each
value's uint8 grid index. The weights' per-channel kernels are
:mod:`supernet.quantizers.lsq_row_kernels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eqsearch.errors import InputError
from supernet.quantizers.numba_kernels import NumbaKernels, plain_jit
from supernet.runtime import host_path

MIN_ELEMENTS_PER_CHUNK = 1 << 16
"""Smaller slices are not worth a parallel region."""


def available() -> bool:
    """Whether the kernel can run here: numba importable (compiled on first use)."""
    return KERNELS.available()


def _fake_quantize_kernel(
    x: Any, out: Any, reciprocal: Any, low: Any, high: Any, step: Any
) -> None:
    # The operations of fake_quant.per_tensor_forward in the same float32 order: x·(1/s),
    # round half to even, clamp to the shifted grid, ·s. NaN passes both comparisons and stays
    # NaN.
    for index in range(x.size):
        value = np.rint(x[index] * reciprocal)
        if value < low:
            value = low
        elif value > high:
            value = high
        out[index] = value * step


def _fake_quantize_levels_kernel(
    x: Any, out: Any, levels: Any, reciprocal: Any, low: Any, high: Any, step: Any
) -> int:
    # _fake_quantize_kernel, and each value's grid index level − low (0 … high − low, a
    # uint8 for grids of at most 256 levels) for the integer convolution; returns how many
    # values were NaN (their index is meaningless: the caller then convolves in float)
    not_a_number = 0
    for index in range(x.size):
        value = np.rint(x[index] * reciprocal)
        if value < low:
            value = low
        elif value > high:
            value = high
        out[index] = value * step
        not_a_number += value != value
        levels[index] = np.uint8(value - low) if value == value else np.uint8(0)
    return not_a_number


def _masked_gradient_kernel(grad: Any, x: Any, low: Any, high: Any, sums: Any) -> None:
    # hardtanh_backward's test in float32 (strictly inside the bounds; NaN is outside), the
    # masked gradient written back, and the sums in float64. Branch-free, so that with
    # reassociation allowed for the sums the loop vectorizes.
    inside_sum = 0.0
    clipped_sum = 0.0
    for index in range(x.size):
        value = x[index]
        gradient = grad[index]
        kept = gradient if (value > low) & (value < high) else np.float32(0.0)
        grad[index] = kept
        inside_sum += kept * value
        clipped_sum += gradient - kept
    sums[0] = inside_sum
    sums[1] = clipped_sum


def _input_directions_kernel(
    x: Any,
    x_hat: Any,
    step_direction: Any,
    offset_direction: Any,
    grid: Any,
    bounds: Any,
    with_offset: Any,
) -> None:
    # _fake_quantize_kernel's x_hat, and from it the derivatives of x_hat by the step
    # ((x_hat − m·x)/s + z·(1 − m)) and by the offset (1 − m), times the gradient scale;
    # m: x strictly inside the clip bounds (NaN inside, as the torch path's comparisons);
    # m·x is a product, so an infinite x (m = 0) gives NaN, as the torch path and autograd
    reciprocal, low, high, step, zero_point, grad_scale = (
        grid[0],
        grid[1],
        grid[2],
        grid[3],
        grid[4],
        grid[5],
    )
    low_bound, high_bound = bounds[0], bounds[1]
    for index in range(x.size):
        value = x[index]
        level = np.rint(value * reciprocal)
        if level < low:
            level = low
        elif level > high:
            level = high
        quantized = level * step
        x_hat[index] = quantized
        clipped = (value <= low_bound) | (value >= high_bound)
        inside = np.float32(0.0) if clipped else np.float32(1.0)
        direction = (quantized - inside * value) / step
        if clipped:
            direction += zero_point
        step_direction[index] = direction * grad_scale
        if with_offset:
            offset_direction[index] = grad_scale if clipped else np.float32(0.0)


def _compile(numba: Any) -> dict[str, Any]:
    jit = plain_jit(numba)
    parallel_jit = plain_jit(numba, parallel=True)
    serial = jit(_fake_quantize_kernel)
    # reassociation only (no finite-math flags: NaN must stay outside the mask)
    serial_mask = plain_jit(numba, fastmath={"reassoc"})(_masked_gradient_kernel)

    def parallel(
        x: Any, out: Any, reciprocal: Any, low: Any, high: Any, step: Any, chunks: int
    ) -> None:
        size = x.size
        for chunk in numba.prange(chunks):
            begin, end = chunk * size // chunks, (chunk + 1) * size // chunks
            serial(x[begin:end], out[begin:end], reciprocal, low, high, step)

    serial_levels = jit(_fake_quantize_levels_kernel)

    def parallel_levels(
        x: Any,
        out: Any,
        levels: Any,
        reciprocal: Any,
        low: Any,
        high: Any,
        step: Any,
        counts: Any,
    ) -> None:
        size, chunks = x.size, counts.size
        for chunk in numba.prange(chunks):
            begin, end = chunk * size // chunks, (chunk + 1) * size // chunks
            counts[chunk] = serial_levels(
                x[begin:end], out[begin:end], levels[begin:end], reciprocal, low, high, step
            )

    return {
        "serial": serial,
        "parallel": parallel_jit(parallel),
        "serial_levels": serial_levels,
        "parallel_levels": parallel_jit(parallel_levels),
        "serial_mask": serial_mask,
        "input_directions": jit(_input_directions_kernel),
    }


KERNELS = NumbaKernels(_compile, "the LSQ CPU kernels")


def warm_up() -> None:
    """Load or compile the kernel for float32 now (before forking workers that share it)."""
    if available():
        fake_quantize(torch.zeros(1), 1.0, 1.0, 0, 1)


def servable(x: torch.Tensor) -> bool:
    """Whether ``x`` can take the compiled path: a float32 CPU tensor without autograd,
    contiguous or channels-last contiguous, off the forced device path
    (:func:`supernet.runtime.host_path`)."""
    return (
        x.dtype == torch.float32
        and host_path(x)
        and not x.requires_grad
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        and available()
    )


def _flat(tensor: torch.Tensor) -> np.ndarray:
    # A dense tensor's elements in memory order (contiguous or channels-last).
    return tensor.as_strided((tensor.numel(),), (1,)).numpy()


def _grid_arguments(
    step: float, reciprocal: float, low: int, high: int
) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    # the per-tensor kernels' grid arguments, in their order
    return np.float32(reciprocal), np.float32(low), np.float32(high), np.float32(step)


def _chunks(x: torch.Tensor) -> int:
    # the slices a per-tensor kernel splits x into: torch's threads, none below the minimum
    return max(1, min(torch.get_num_threads(), x.numel() // MIN_ELEMENTS_PER_CHUNK))


def fake_quantize(
    x: torch.Tensor, step: float, reciprocal: float, low: int, high: int
) -> torch.Tensor:
    """``clamp(round(x·reciprocal), low, high)·step`` in float32, one pass, same layout as ``x``.

    Args:
        x: a tensor for which :func:`servable` holds.
        step, reciprocal: the float32 step size and its float32 reciprocal.
        low, high: the grid shifted by the zero point, ``qmin − z`` and ``qmax − z``.
    """
    if not available():  # pragma: no cover - callers check servable() first
        raise RuntimeError("the one-pass kernel needs numba")
    out = torch.empty_like(x)
    source, target = _flat(x), _flat(out)
    arguments = _grid_arguments(step, reciprocal, low, high)
    chunks = _chunks(x)
    if chunks > 1:
        KERNELS["parallel"](source, target, *arguments, chunks)
    else:
        KERNELS["serial"](source, target, *arguments)
    return out


def fake_quantize_levels(
    x: torch.Tensor, step: float, reciprocal: float, low: int, high: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`fake_quantize`, and each value's grid index ``level − low`` as uint8 (same
    layout as ``x``), in one pass: the operands of an integer convolution
    (:mod:`supernet.quantizers.integer_conv`); the grid must have at most 256 levels.

    Returns:
        ``(out, levels)``; ``levels`` is None where ``x`` holds a NaN (no grid index
        represents it: the float convolution then carries it on).
    """
    if not available():  # pragma: no cover - callers check servable() first
        raise RuntimeError("the one-pass kernel needs numba")
    if high - low > 255:
        raise InputError(f"a uint8 grid index holds at most 256 levels; got {high - low + 1}")
    out = torch.empty_like(x)
    levels = torch.empty_like(x, dtype=torch.uint8)
    source, target, indices = _flat(x), _flat(out), _flat(levels)
    arguments = _grid_arguments(step, reciprocal, low, high)
    chunks = _chunks(x)
    if chunks > 1:
        counts = np.zeros(chunks, dtype=np.int64)
        KERNELS["parallel_levels"](source, target, indices, *arguments, counts)
        not_a_number = int(counts.sum())
    else:
        not_a_number = KERNELS["serial_levels"](source, target, indices, *arguments)
    return out, None if not_a_number else levels


def input_directions(
    x: torch.Tensor,
    step: float,
    reciprocal: float,
    low: int,
    high: int,
    zero_point: int,
    grad_scale: float,
    with_offset: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The fake-quantized ``x`` and its derivatives by the step and (``with_offset``) by the
    offset, times ``grad_scale``, in one pass (for an input without gradient: the images).

    ``x_hat`` equals :func:`fake_quantize`'s bit for bit; the step's derivative is
    ``(x_hat − m·x)/s + z·(1 − m)``, the offset's ``1 − m``, with ``m`` the mask of ``x``
    strictly inside the clip bounds ``[low·s, high·s]`` (rounded to float32).

    Args:
        x: a tensor for which :func:`servable` holds.
        step, reciprocal: the float32 step size and its float32 reciprocal.
        low, high: the grid shifted by the zero point, ``qmin − z`` and ``qmax − z``.
        zero_point: the integer zero point ``z``.
        grad_scale: LSQ's gradient scale.
        with_offset: also return the offset's derivative (else None in its place).
    """
    if not available():  # pragma: no cover - callers check servable() first
        raise RuntimeError("the one-pass kernel needs numba")
    x_hat, step_direction = torch.empty_like(x), torch.empty_like(x)
    offset_direction = torch.empty_like(x) if with_offset else None
    grid = np.array([reciprocal, low, high, step, zero_point, grad_scale], dtype=np.float32)
    bounds = np.array([low * step, high * step], dtype=np.float32)
    KERNELS["input_directions"](
        _flat(x),
        _flat(x_hat),
        _flat(step_direction),
        _flat(step_direction if offset_direction is None else offset_direction),
        grid,
        bounds,
        with_offset,
    )
    return x_hat, step_direction, offset_direction


def mask_servable(grad: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether :func:`mask_gradient` can take ``grad`` and ``x``: both servable, of one
    layout (the same strides), ``grad`` a buffer the caller may overwrite."""
    return grad.stride() == x.stride() and servable(grad) and servable(x)


def mask_gradient(
    grad: torch.Tensor, x: torch.Tensor, low: float, high: float
) -> tuple[float, float]:
    """Zero ``grad`` in place where ``x`` is not strictly inside ``(low, high)``; one pass.

    Args:
        grad: the upstream gradient, overwritten with ``grad · m``.
        x: the quantizer's input (:func:`mask_servable` holds for the pair).
        low, high: the clip bounds in ``x``'s units (rounded to float32, as
            ``hardtanh_backward`` does).

    Returns:
        ``(Σ grad·m·x, Σ grad·(1−m))``, summed in float64.
    """
    if not available():  # pragma: no cover - callers check mask_servable() first
        raise RuntimeError("the one-pass kernel needs numba")
    sums = np.zeros(2)
    target, source = _flat(grad), _flat(x)
    bounds = (np.float32(low), np.float32(high))
    # One thread: the pass runs in the backward between two oneDNN convolutions, whose
    # OpenMP threads are still spinning on the other cores; numba's own threads would
    # compete with them for those cores (measured slower than the serial loop on 2 cores).
    KERNELS["serial_mask"](target, source, *bounds, sums)
    return float(sums[0]), float(sums[1])
