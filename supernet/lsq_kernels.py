"""One-pass LSQ+ per-tensor fake quantization and its backward (numba), equal to the torch path.

The torch forward makes four passes over an activation (multiply into a new tensor, round,
clamp, multiply); one compiled loop does the same float32 operations in one pass, three times
faster (2.2 ms against 7.0 ms for a 500×16×32×32 batch on one thread). The backward's clip
mask and its two sums (``Σ g·m·x`` and ``Σ g·(1−m)``) are one more pass that writes the masked
gradient in place, where torch needs a mask pass and two reductions. The activations' fake
quantization is memory-bound on CPUs, so passes are what a training step pays for. The kernels
serve dense float32 CPU tensors; anything else stays on the torch path. Large tensors are split
over ``torch.get_num_threads()`` slices run by numba's parallel mode, as the N2UQ kernels are
(see :mod:`supernet.quantizers.n2uq_kernels`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MIN_ELEMENTS_PER_CHUNK = 1 << 16
"""Smaller slices are not worth a parallel region."""

_compiled: dict[str, Any] = {}


def available() -> bool:
    """Whether the kernel can run here: numba importable (compiled on first use)."""
    if "serial" not in _compiled:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency; torch is the fallback
            return False
        _compile(numba)
    return True


def _fake_quantize_kernel(
    x: Any, out: Any, reciprocal: Any, low: Any, high: Any, step: Any
) -> None:
    # The operations of _PerTensorLsq.forward in the same float32 order: x·(1/s), round half
    # to even, clamp to the shifted grid, ·s. NaN passes both comparisons and stays NaN.
    for index in range(x.size):
        value = np.rint(x[index] * reciprocal)
        if value < low:
            value = low
        elif value > high:
            value = high
        out[index] = value * step


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


def _per_channel_kernel(
    weight: Any, out: Any, scaled: Any, reciprocal: Any, step: Any, zero: Any, qmin: Any, qmax: Any
) -> None:
    # per_channel_forward's float32 operations in its order: w·(1/s), round half to even,
    # + z, clamp to the grid, − z, ·s (NaN stays NaN)
    for channel in range(weight.shape[0]):
        inverse, size, zero_point = reciprocal[channel], step[channel], zero[channel]
        for index in range(weight.shape[1]):
            value = weight[channel, index] * inverse
            scaled[channel, index] = value
            level = np.rint(value) + zero_point
            if level < qmin:
                level = qmin
            elif level > qmax:
                level = qmax
            out[channel, index] = (level - zero_point) * size


def _per_channel_mask_kernel(
    grad: Any, weight: Any, out: Any, scaled: Any, zero: Any, qmin: Any, qmax: Any, sums: Any
) -> None:
    # per channel: Σ g·out, then the mask of the shifted scale x·(1/s) + z strictly inside
    # (qmin, qmax) written into grad, Σ g·m·x and Σ g·(1−m), in float64
    for channel in range(weight.shape[0]):
        zero_point = zero[channel]
        grad_dot_out = 0.0
        inside_sum = 0.0
        clipped_sum = 0.0
        for index in range(weight.shape[1]):
            gradient = grad[channel, index]
            grad_dot_out += gradient * out[channel, index]
            shifted = scaled[channel, index] + zero_point
            kept = gradient if (shifted > qmin) & (shifted < qmax) else np.float32(0.0)
            grad[channel, index] = kept
            inside_sum += kept * weight[channel, index]
            clipped_sum += gradient - kept
        sums[channel, 0] = grad_dot_out
        sums[channel, 1] = inside_sum
        sums[channel, 2] = clipped_sum


def _compile(numba: Any) -> None:
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)
    parallel_jit = numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
    serial = jit(_fake_quantize_kernel)
    # reassociation only (no finite-math flags: NaN must stay outside the mask)
    serial_mask = numba.njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"})(
        _masked_gradient_kernel
    )

    def parallel(
        x: Any, out: Any, reciprocal: Any, low: Any, high: Any, step: Any, chunks: int
    ) -> None:
        size = x.size
        for chunk in numba.prange(chunks):
            begin, end = chunk * size // chunks, (chunk + 1) * size // chunks
            serial(x[begin:end], out[begin:end], reciprocal, low, high, step)

    _compiled.update(
        serial=serial,
        parallel=parallel_jit(parallel),
        serial_mask=serial_mask,
        per_channel=jit(_per_channel_kernel),
        per_channel_mask=numba.njit(
            cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"}
        )(_per_channel_mask_kernel),
    )


def warm_up() -> None:
    """Load or compile the kernel for float32 now (before forking workers that share it)."""
    if available():
        fake_quantize(torch.zeros(1), 1.0, 1.0, 0, 1)


def servable(x: torch.Tensor) -> bool:
    """Whether ``x`` can take the compiled path: a float32 CPU tensor without autograd,
    contiguous or channels-last contiguous."""
    return (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and not x.requires_grad
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        and available()
    )


def _flat(tensor: torch.Tensor) -> np.ndarray:
    # A dense tensor's elements in memory order (contiguous or channels-last).
    return tensor.as_strided((tensor.numel(),), (1,)).numpy()


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
    arguments = (
        np.float32(reciprocal),
        np.float32(low),
        np.float32(high),
        np.float32(step),
    )
    chunks = max(1, min(torch.get_num_threads(), x.numel() // MIN_ELEMENTS_PER_CHUNK))
    if chunks > 1:
        _compiled["parallel"](source, target, *arguments, chunks)
    else:
        _compiled["serial"](source, target, *arguments)
    return out


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
    _compiled["serial_mask"](target, source, *bounds, sums)
    return float(sums[0]), float(sums[1])


def _matrix(tensor: torch.Tensor) -> np.ndarray:
    # (channels, elements per channel) in logical order; a view of a contiguous tensor
    return tensor.reshape(tensor.shape[0], -1).numpy()


def per_channel_servable(weight: torch.Tensor) -> bool:
    """Whether the per-channel kernels serve ``weight``: a contiguous float32 CPU tensor."""
    return (
        weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and available()
    )


def per_channel_fake_quantize(
    weight: torch.Tensor,
    step: torch.Tensor,
    reciprocal: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    qmax: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``s·(clamp(round(w·(1/s)) + z, qmin, qmax) − z)`` per output channel, in one pass.

    Args:
        weight: a tensor for which :func:`per_channel_servable` holds (without autograd).
        step, reciprocal, zero_point: per-channel float32 vectors (the zero point as floats).

    Returns:
        ``(out, scaled)``: the fake-quantized weight and ``w·(1/s)``, both contiguous.
    """
    out = torch.empty_like(weight, memory_format=torch.contiguous_format)
    scaled = torch.empty_like(out)
    _compiled["per_channel"](
        _matrix(weight),
        _matrix(out),
        _matrix(scaled),
        reciprocal.numpy(),
        step.numpy(),
        zero_point.numpy(),
        np.float32(qmin),
        np.float32(qmax),
    )
    return out, scaled


def per_channel_mask_gradient(
    grad: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor,
    scaled: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """Mask ``grad`` in place (the per-channel clip test) and return per-channel sums.

    All tensors contiguous float32 of the weight's shape (``zero_point`` one float per
    channel). Returns a ``(channels, 3)`` float64 array: ``Σ g·out``, ``Σ g·m·w`` and
    ``Σ g·(1−m)`` per channel (``g`` the gradient before masking).
    """
    sums = np.zeros((weight.shape[0], 3))
    _compiled["per_channel_mask"](
        _matrix(grad),
        _matrix(weight),
        _matrix(out),
        _matrix(scaled),
        zero_point.numpy(),
        np.float32(qmin),
        np.float32(qmax),
        sums,
    )
    return sums
