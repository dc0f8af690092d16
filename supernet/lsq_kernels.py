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
    weight: Any,
    step: Any,
    minimum_step: Any,
    offset: Any,
    has_offset: Any,
    qmin: Any,
    qmax: Any,
    out: Any,
    constants: Any,
) -> None:
    # per_channel_forward's float32 operations in its order: the step clamped to MIN_STEP,
    # its reciprocal, the zero point round(−β/s) clamped to the grid (0 without an offset);
    # then w·(1/s), round half to even, + z, clamp to the grid, − z, ·s (NaN stays NaN)
    for channel in range(weight.shape[0]):
        size = step[channel]
        if size < minimum_step:
            size = minimum_step
        inverse = np.float32(1.0) / size
        zero_point = np.float32(0.0)
        if has_offset:
            zero_point = np.rint(-offset[channel] / size)
            if zero_point < qmin:
                zero_point = qmin
            elif zero_point > qmax:
                zero_point = qmax
        constants[channel, 0] = size
        constants[channel, 1] = inverse
        constants[channel, 2] = zero_point
        for index in range(weight.shape[1]):
            level = np.rint(weight[channel, index] * inverse) + zero_point
            if level < qmin:
                level = qmin
            elif level > qmax:
                level = qmax
            out[channel, index] = (level - zero_point) * size


def _per_channel_gradient_kernel(
    grad: Any,
    weight: Any,
    constants: Any,
    has_offset: Any,
    qmin: Any,
    qmax: Any,
    grad_scale: Any,
    chain: Any,
    use_chain: Any,
    grad_step: Any,
    grad_offset: Any,
    total: Any,
) -> None:
    # per channel, the forward's values again from the weight and the constants (cheaper than
    # reading them back from memory): Σ g·out, then the mask of the shifted scale
    # x·(1/s) + z strictly inside (qmin, qmax) written into grad, Σ g·m·x and Σ g·(1−m), in
    # float64; from them the step and offset gradients (through exp(log step) with use_chain)
    grand_total = 0.0
    for channel in range(weight.shape[0]):
        size, inverse = constants[channel, 0], constants[channel, 1]
        zero_point = constants[channel, 2]
        grad_dot_out = 0.0
        inside_sum = 0.0
        clipped_sum = 0.0
        for index in range(weight.shape[1]):
            value = weight[channel, index]
            scaled = value * inverse
            level = np.rint(scaled) + zero_point
            if level < qmin:
                level = qmin
            elif level > qmax:
                level = qmax
            gradient = grad[channel, index]
            grad_dot_out += gradient * ((level - zero_point) * size)
            shifted = scaled + zero_point
            kept = gradient if (shifted > qmin) & (shifted < qmax) else np.float32(0.0)
            grad[channel, index] = kept
            inside_sum += kept * value
            clipped_sum += gradient - kept
        step_gradient = (grad_dot_out - inside_sum) / size
        if has_offset:
            step_gradient += zero_point * clipped_sum
            grad_offset[channel] = clipped_sum * grad_scale
        step_gradient *= grad_scale
        if use_chain:
            step_gradient *= chain[channel]
        grad_step[channel] = step_gradient
        grand_total += grad_dot_out
    total[0] = grand_total


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
        per_channel_gradient=numba.njit(
            cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"}
        )(_per_channel_gradient_kernel),
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
    minimum_step: float,
    offset: torch.Tensor | None,
    qmin: int,
    qmax: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``s·(clamp(round(w·(1/s)) + z, qmin, qmax) − z)`` per output channel, in one pass.

    Args:
        weight: a tensor for which :func:`per_channel_servable` holds (without autograd).
        step: the per-channel float32 steps as learned (clamped to ``minimum_step`` here).
        offset: the per-channel float32 offsets β, or None (symmetric: zero point 0).

    Returns:
        ``(out, constants)``: the fake-quantized weight (contiguous) and a ``(channels, 3)``
        float32 tensor of each channel's clamped step, its reciprocal and its zero point.
    """
    out = torch.empty_like(weight, memory_format=torch.contiguous_format)
    constants = torch.empty((weight.shape[0], 3), dtype=weight.dtype)
    steps = step.detach().numpy()
    _compiled["per_channel"](
        _matrix(weight),
        steps,
        np.float32(minimum_step),
        steps if offset is None else offset.detach().numpy(),
        offset is not None,
        np.float32(qmin),
        np.float32(qmax),
        _matrix(out),
        constants.numpy(),
    )
    return out, constants


def per_channel_gradients(
    grad: torch.Tensor,
    weight: torch.Tensor,
    constants: torch.Tensor,
    has_offset: bool,
    qmin: int,
    qmax: int,
    grad_scale: float,
    chain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Mask ``grad`` in place (the per-channel clip test) and compute the entry's gradients.

    Args:
        grad, weight: contiguous float32 tensors of one shape (``grad`` is overwritten with
            ``grad · m``).
        constants: :func:`per_channel_fake_quantize`'s per-channel constants.
        has_offset: whether the entry has offsets (their gradients are computed).
        grad_scale: LSQ's gradient scale.
        chain: a per-channel factor for the step gradient (the step itself, for a step
            learned as its logarithm), or None.

    Returns:
        ``(grad_step, grad_offset or None, Σ g·out over the whole weight)``: the float32
        gradients per channel from float64 sums ``Σ g·out``, ``Σ g·m·w`` and ``Σ g·(1−m)``
        (``g`` the gradient before masking).
    """
    channels = weight.shape[0]
    grad_step = torch.empty(channels, dtype=weight.dtype)
    grad_offset = torch.empty(channels, dtype=weight.dtype) if has_offset else None
    step_values = grad_step.numpy()
    total = np.zeros(1)
    _compiled["per_channel_gradient"](
        _matrix(grad),
        _matrix(weight),
        constants.numpy(),
        has_offset,
        np.float32(qmin),
        np.float32(qmax),
        grad_scale,
        step_values if chain is None else chain.detach().numpy(),
        chain is not None,
        step_values,
        step_values if grad_offset is None else grad_offset.numpy(),
        total,
    )
    return grad_step, grad_offset, float(total[0])
