"""LSQ+ fake quantization as autograd Functions that make few passes over each tensor.

Forward: ``x_hat = s · clamp(round(x / s), qmin − z, qmax − z)`` with the integer zero point
``z = clamp(round(−β / s), qmin, qmax)`` (``β`` the learnable offset; symmetric forms have none).
This equals ``torch.fake_quantize_per_*_affine(x, s, z, qmin, qmax)`` and is what a
QuantizeLinear/DequantizeLinear pair computes, so exported models match exactly.

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

from typing import Any

import numpy as np
import torch

MIN_STEP = 1e-8


def _float32_reciprocal(value: float) -> float:
    # torch's reference kernels use the float32 reciprocal; match it bit for bit.
    return float(np.float32(1.0) / np.float32(value))


def integer_zero_point(step: float, offset: float | None, qmin: int, qmax: int) -> int:
    """Integer zero point of a per-tensor (step, offset) pair on the grid [qmin, qmax]."""
    if offset is None:
        return 0
    return int(min(max(round(-offset / step), qmin), qmax))


def _flat(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``tensor`` as a vector in one fixed element order: NHWC for ``channels_last`` (a view
    of a channels-last tensor, where ``reshape(-1)`` would copy it), else NCHW."""
    if channels_last:
        return tensor.permute(0, 2, 3, 1).reshape(-1)
    return tensor.reshape(-1)


class _PerTensorLsq(torch.autograd.Function):
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
        step_value = max(float(step.detach().item()), MIN_STEP)
        if x.dtype == torch.float64:
            reciprocal = 1.0 / step_value
        else:
            step_value = float(np.float32(step_value))
            reciprocal = _float32_reciprocal(step_value)
        zero_point = integer_zero_point(
            step_value, None if offset is None else float(offset.detach().item()), qmin, qmax
        )
        low, high = qmin - zero_point, qmax - zero_point
        out = x * reciprocal
        out.round_()
        out.clamp_(low, high)
        out.mul_(step_value)
        ctx.save_for_backward(x, out)
        ctx.constants = (step_value, low, high, zero_point, grad_scale, offset is not None)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = grads
        x, out = ctx.saved_tensors
        step_value, low, high, zero_point, grad_scale, has_offset = ctx.constants
        grad_x = torch.ops.aten.hardtanh_backward(grad, x, low * step_value, high * step_value)
        grad_step = grad_offset = None
        if ctx.needs_input_grad[1] or (has_offset and ctx.needs_input_grad[2]):
            # the same element order for all four (channels-last activations are not copied)
            nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            flat_grad = _flat(grad, nhwc)
            flat_grad_x = _flat(grad_x, nhwc)
            inside = torch.dot(flat_grad, _flat(out, nhwc)) - torch.dot(flat_grad_x, _flat(x, nhwc))
            grad_step = inside / step_value
            if has_offset:
                clipped = flat_grad.sum() - flat_grad_x.sum()
                grad_step = grad_step + zero_point * clipped
                grad_offset = (clipped * grad_scale).reshape(1)
            grad_step = (grad_step * grad_scale).reshape(1)
        return grad_x, grad_step, grad_offset, None, None, None


class _PerChannelLsq(torch.autograd.Function):
    # The forward rounds x·(1/s) and then adds the integer zero point, as
    # torch.fake_quantize_per_channel_affine does: rounding z + x·(1/s) instead differs where
    # the float32 addition moves a value across a rounding tie. The backward's mask works on
    # the shifted scale x·(1/s) + z, where the grid bounds are the constants qmin/qmax for
    # every channel, so it is one hardtanh_backward.

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
        shape = (-1,) + (1,) * (x.dim() - 1)
        step_value = step.detach().clamp_min(MIN_STEP)
        step_view = step_value.view(shape)
        scaled = x * torch.reciprocal(step_value).view(shape)
        if offset is None:
            zero_point = None
            out = torch.round(scaled).clamp_(qmin, qmax)
        else:
            zero_point = torch.round(-offset.detach() / step_value).clamp_(qmin, qmax)
            zero_view = zero_point.view(shape)
            out = torch.round(scaled).add_(zero_view).clamp_(qmin, qmax).sub_(zero_view)
        out.mul_(step_view)
        ctx.save_for_backward(x, out, scaled, step_value, zero_point)
        ctx.constants = (qmin, qmax, grad_scale)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = grads
        x, out, scaled, step_value, zero_point = ctx.saved_tensors
        qmin, qmax, grad_scale = ctx.constants
        shape = (-1,) + (1,) * (x.dim() - 1)
        shifted = scaled if zero_point is None else scaled + zero_point.view(shape)
        grad_x = torch.ops.aten.hardtanh_backward(grad, shifted, qmin, qmax)
        grad_step = grad_offset = None
        if ctx.needs_input_grad[1] or (zero_point is not None and ctx.needs_input_grad[2]):
            channels = x.shape[0]
            flat_grad = grad.reshape(channels, -1)
            flat_grad_x = grad_x.reshape(channels, -1)
            inside = (flat_grad * out.reshape(channels, -1)).sum(1)
            inside -= (flat_grad_x * x.reshape(channels, -1)).sum(1)
            grad_step = inside / step_value
            if zero_point is not None:
                clipped = flat_grad.sum(1) - flat_grad_x.sum(1)
                grad_step += zero_point * clipped
                grad_offset = clipped * grad_scale
            grad_step *= grad_scale
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
    """
    if step.numel() == 1:
        return _PerTensorLsq.apply(x, step, offset, qmin, qmax, grad_scale)  # type: ignore[no-any-return]
    return _PerChannelLsq.apply(x, step, offset, qmin, qmax, grad_scale)  # type: ignore[no-any-return]


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
