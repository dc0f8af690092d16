"""LSQ+ fake quantization as autograd Functions that make few passes over each tensor.

Forward: ``x_hat = s · clamp(round(x / s), qmin − z, qmax − z)`` with the integer zero point
``z = clamp(round(−β / s), qmin, qmax)`` (``β`` the learnable offset; symmetric forms have none).
This equals ``torch.fake_quantize_per_*_affine(x, s, z, qmin, qmax)`` bit for bit (both
multiply by the float32 reciprocal ``1/s``). An exported QuantizeLinear/DequantizeLinear pair
computes the same formula, but ONNX Runtime divides by ``s``: the two round differently where
``x/s`` lies within float32 rounding of a rounding tie (``|x/s − (k+½)| ≤ 2^-21·|x/s|``), and
such a value lands exactly one level apart. On values spread uniformly over an 8-bit grid that is
2.0e-6 of them (signed grid) and 2.9e-6 (unsigned), averaged over 48 random steps (0 to 1e-5
for one step, depending on how far the float32 ``1/s`` is from ``1/s``; 0 for a power-of-two
step); fewer at fewer bits, since the chance grows with ``|x/s|``
(``tests/supernet/quantizers/test_export_rounding.py`` holds this).

Backward (LSQ / LSQ+ with straight-through rounding), with ``m`` the in-range mask of the
*unrounded* value, ``m = [qmin < x/s + z < qmax]`` (LSQ's clip test, as ``torch.clamp``'s
gradient in EQ-Net's code; a value in the half-step band past an end point rounds to the end
point but is clipped): ``∂L/∂x = g·m``; ``∂L/∂s = Σ g·(x_hat − m·x)/s + z·Σ g·(1−m)``
(``round(x/s) − x/s`` inside, the end point ``qmin`` or ``qmax`` outside);
``∂L/∂β = Σ g·(1−m)``; both quantizer gradients multiplied by the LSQ gradient scale.

Speed: the textbook chain (divide, round, clamp, multiply, and boolean masks in backward)
costs many passes and allocations; boolean masks are slow on CPU. Here the forward is one
allocation and three in-place passes, and the backward uses ``hardtanh_backward`` (a fused
two-sided mask-multiply) plus two dot products.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from supernet.quantizers import device_ops, lsq_kernels
from supernet.quantizers.base import compute_dtype
from supernet.quantizers.lsq_constants import (
    MIN_STEP,
    PerTensorConstants,
    Sum,
    as_sum,
    integer_zero_point,
    per_tensor_constants,
)
from supernet.quantizers.per_channel_fake_quant import (
    PerChannelResult,
    per_channel_backward,
    per_channel_forward,
    per_channel_mask,
)


def _flat(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``tensor`` as a vector in one fixed element order: NHWC for ``channels_last`` (a view
    of a channels-last tensor, where ``reshape(-1)`` would copy it), else NCHW."""
    if channels_last:
        return tensor.permute(0, 2, 3, 1).reshape(-1)
    return tensor.reshape(-1)


def per_tensor_levels(x: torch.Tensor, constants: PerTensorConstants) -> torch.Tensor:
    """``clamp(round(x · (1/s)), qmin − z, qmax − z)``: the levels ``x_hat / s`` (torch ops)."""
    if constants.on_host:
        return device_ops.levels(x.detach(), constants.reciprocal, constants.low, constants.high)
    return device_ops.device_levels(x.detach(), constants.reciprocal, constants.low, constants.high)


def per_tensor_forward(x: torch.Tensor, constants: PerTensorConstants) -> torch.Tensor:
    """``s · clamp(round(x · (1/s)), qmin − z, qmax − z)``: one allocation, three in place."""
    source = x.detach()
    numbers = constants.numbers()
    if numbers is not None and lsq_kernels.servable(source):
        return lsq_kernels.fake_quantize(
            source, numbers.step, numbers.reciprocal, numbers.low, numbers.high
        )
    if constants.on_host:
        return per_tensor_levels(x, constants).mul_(constants.step)
    return device_ops.device_forward(
        source, constants.reciprocal, constants.low, constants.high, constants.step
    )


def _not_a_number(grad: torch.Tensor, in_place: bool) -> torch.Tensor:
    # The input gradient of a NaN or infinite step (or a NaN offset, which per_tensor_constants
    # turns into a NaN step): torch's formula, differentiated by autograd, multiplies the mask
    # by (1/s)·s, which is NaN for such a step.
    return grad.fill_(math.nan) if in_place else torch.full_like(grad, math.nan)


def per_tensor_mask(
    grad: torch.Tensor, x: torch.Tensor, constants: PerTensorConstants, *, in_place: bool = False
) -> torch.Tensor:
    """``grad · m``, ``m`` the in-range mask of the unrounded ``x / s`` (written into ``grad``
    itself when ``in_place``: only for a gradient buffer nobody else holds); NaN everywhere
    for a NaN or infinite step, as autograd of ``round(clamp(x/s))·s`` gives."""
    low, high = constants.low * constants.step, constants.high * constants.step
    if isinstance(low, torch.Tensor):  # the device path: hardtanh_backward's test, as tensors
        return device_ops.device_mask(grad, x.detach(), low, high)
    if not math.isfinite(constants.step):
        return _not_a_number(grad, in_place)
    if in_place:
        return torch.ops.aten.hardtanh_backward.grad_input(grad, x, low, high, grad_input=grad)
    return torch.ops.aten.hardtanh_backward(grad, x, low, high)


MASK_KERNEL_MAX_THREADS = 1
"""The most torch threads at which :func:`per_tensor_mask_and_sums` takes the one-pass kernel
(``benchmarks/step_parts.py`` measures the step both ways)."""


def mask_takes_kernel() -> bool:
    """Whether the backward mask of a dense float32 activation takes the one-pass kernel.

    On one thread it does (one pass against torch's two). On several, torch's mask pass and
    reduction run on all its threads where the kernel runs on one (ResNet-20 W4/A4 step 2–3 %
    faster on 2 threads). The two sum in different precisions, so the choice depends on the
    thread count only, never on the machine's load: how idle threads wait
    (``OMP_WAIT_POLICY``, which ``eqsearch`` commands set from the load) would otherwise change
    a run's figures.
    """
    return torch.get_num_threads() <= MASK_KERNEL_MAX_THREADS


def per_tensor_mask_and_sums(
    grad: torch.Tensor,
    x: torch.Tensor,
    constants: PerTensorConstants,
    *,
    in_place: bool = False,
    clipped_sum: bool = False,
) -> tuple[torch.Tensor, Sum, Sum | None]:
    """The masked gradient ``g·m``, ``Σ g·m·x`` and (with ``clipped_sum``) ``Σ g·(1−m)``.

    ``in_place`` writes ``g·m`` into ``grad`` (only for a buffer nobody else holds); a dense
    float32 pair of one layout then takes the one-pass kernel
    (:mod:`~supernet.quantizers.lsq_kernels`, float64 sums) where :func:`mask_takes_kernel`
    says so, else torch's mask pass and reductions. The sums are Python floats on the host
    path, 0-d tensors on the device path (no host synchronisation).
    """
    source = x.detach()  # a tensor saved for backward still says it requires grad
    if not constants.on_host:
        low, high = constants.low * constants.step, constants.high * constants.step
        masked, inside_dot, outside_sum = device_ops.device_mask_and_sums(grad, source, low, high)
        return masked, inside_dot, outside_sum if clipped_sum else None
    if not math.isfinite(constants.step):  # every gradient NaN, as per_tensor_mask says
        return _not_a_number(grad, in_place), math.nan, math.nan if clipped_sum else None
    if (
        in_place
        and constants.on_host
        and mask_takes_kernel()
        and lsq_kernels.mask_servable(grad, source)
    ):
        low, high = constants.low * constants.step, constants.high * constants.step
        inside, outside = lsq_kernels.mask_gradient(grad, source, float(low), float(high))
        return grad, inside, outside if clipped_sum else None
    # the same element order for both (channels-last activations are not copied)
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    grad_sum = as_sum(_flat(grad, nhwc).sum()) if clipped_sum else None
    grad_x = per_tensor_mask(grad, source, constants, in_place=in_place)
    flat_grad_x = _flat(grad_x, nhwc)
    masked_dot = as_sum(torch.dot(flat_grad_x, _flat(source, nhwc)))
    clipped = None if grad_sum is None else grad_sum - as_sum(flat_grad_x.sum())
    return grad_x, masked_dot, clipped


_NUMPY_TYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _parameter_tensor(value: Sum, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a gradient of shape ``(1,)`` in ``like``'s dtype and device."""
    if isinstance(value, torch.Tensor):
        return value.reshape(1).to(like.dtype)
    if like.device.type == "cpu" and like.dtype in _NUMPY_TYPES:  # the cheapest way there
        return torch.from_numpy(np.array([value], dtype=_NUMPY_TYPES[like.dtype]))
    return torch.tensor([value], dtype=like.dtype, device=like.device)


def per_tensor_parameter_gradients(
    grad_dot_out: Sum,
    masked_dot: Sum,
    clipped: Sum | None,
    constants: PerTensorConstants,
    grad_scale: float,
    like: torch.Tensor,
    *,
    log_step: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (step, offset) gradients of a per-tensor entry, shape ``(1,)`` each.

    Args:
        grad_dot_out: ``Σ g · x_hat`` (the upstream gradient against the output).
        masked_dot: ``Σ g·m·x``.
        clipped: ``Σ g·(1−m)`` for an entry with an offset, else None.
        like: a tensor of the gradients' dtype and device.
        log_step: the step is learned as its logarithm: its gradient goes through ``exp``.
    """
    grad_step = (grad_dot_out - masked_dot) / constants.step
    grad_offset = None
    if clipped is not None:
        grad_step = grad_step + constants.zero_point * clipped
        grad_offset = _parameter_tensor(clipped * grad_scale, like)
    grad_step = grad_step * grad_scale
    if log_step:
        grad_step = grad_step * constants.learned_step
    return _parameter_tensor(grad_step, like), grad_offset


class _LsqFakeQuantize(torch.autograd.Function):
    """:func:`lsq_fake_quantize`: per tensor for a step of one element, else per channel."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        step: torch.Tensor,
        offset: torch.Tensor | None,
        qmin: int,
        qmax: int,
        grad_scale: float,
    ) -> torch.Tensor:
        constants = None
        if step.numel() == 1:
            constants = per_tensor_constants(step, offset, qmin, qmax, x.dtype)
            out = per_tensor_forward(x, constants)
            ctx.save_for_backward(x, out)
        else:
            result = per_channel_forward(x, step, offset, qmin, qmax)
            out = result.out
            ctx.save_for_backward(x, out, result.constants)
        ctx.constants = (constants, qmin, qmax, grad_scale, offset is not None)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = grads
        constants, qmin, qmax, grad_scale, has_offset = ctx.constants
        parameters = ctx.needs_input_grad[1] or (has_offset and ctx.needs_input_grad[2])
        if constants is None:  # per channel
            x, out, channel_constants = ctx.saved_tensors
            result = PerChannelResult(out, channel_constants, has_offset)
            if not parameters:
                return per_channel_mask(grad, x, result, qmin, qmax), None, None, None, None, None
            grad_x, grad_step, grad_offset, _ = per_channel_backward(
                grad, x, result, qmin, qmax, grad_scale
            )
            return grad_x, grad_step, grad_offset, None, None, None
        x, out = ctx.saved_tensors
        if not parameters:
            return per_tensor_mask(grad, x, constants), None, None, None, None, None
        grad_x, masked_dot, clipped = per_tensor_mask_and_sums(
            grad, x, constants, clipped_sum=has_offset
        )
        nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        grad_step, grad_offset = per_tensor_parameter_gradients(
            torch.dot(_flat(grad, nhwc), _flat(out, nhwc)),
            masked_dot,
            clipped,
            constants,
            grad_scale,
            grad,
        )
        return grad_x, grad_step, grad_offset, None, None, None


def lsq_fake_quantize(
    x: torch.Tensor,
    step: torch.Tensor,
    offset: torch.Tensor | None,
    qmin: int,
    qmax: int,
    grad_scale: float = 1.0,
) -> torch.Tensor:
    """Fake-quantize ``x`` with a learnable step (and offset) onto the grid [qmin, qmax].

    Args:
        x: the tensor; for per-channel quantization, channels along dim 0.
        step: step size(s): shape ``(1,)`` per tensor, ``(x.shape[0],)`` per channel.
        offset: learnable offset(s) β of the same shape (asymmetric forms), or None.
        qmin, qmax: the integer grid, e.g. ``-8, 7`` for signed 4 bits.
        grad_scale: LSQ gradient scale applied to the step and offset gradients.

    A bfloat16 or float16 ``x`` (under autocast) is quantized from its exact float32 value
    and the result is float32 (the levels ``s·q`` are not exact in the narrower type).
    """
    x = x.to(compute_dtype(x.dtype))
    return _LsqFakeQuantize.apply(x, step, offset, qmin, qmax, grad_scale)  # type: ignore[no-any-return]


def effective_zero_points(
    step: torch.Tensor, offset: torch.Tensor | None, qmin: int, qmax: int
) -> torch.Tensor:
    """Integer zero points (as int32) that :func:`lsq_fake_quantize` uses for these params."""
    step_value = step.detach().clamp_min(MIN_STEP)
    if offset is None:
        return torch.zeros_like(step_value, dtype=torch.int32)
    if step.numel() == 1:
        value = integer_zero_point(
            max(float(np.float32(step_value.item())), MIN_STEP),
            float(offset.detach().item()),
            qmin,
            qmax,
        )
        return torch.full_like(step_value, value, dtype=torch.int32)
    return torch.round(-offset.detach() / step_value).clamp_(qmin, qmax).to(torch.int32)
