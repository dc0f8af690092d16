"""LSQ+ fake quantization per channel (dim 0) and its gradients: the one-pass kernels for
contiguous float32 tensors (:mod:`supernet.quantizers.lsq_row_kernels`), else torch ops with the
same operations."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from supernet.quantizers import lsq_row_kernels
from supernet.quantizers.lsq_constants import MIN_STEP, Sum


def _layer_rows(x: torch.Tensor, qmin: int, qmax: int, has_offset: bool) -> lsq_row_kernels.Rows:
    """The kernels' rows of one tensor quantized per channel (dim 0)."""
    channels = x.shape[0]
    return lsq_row_kernels.layer_rows(((channels, x.numel() // channels, qmin, qmax, has_offset),))


class PerChannelResult(NamedTuple):
    """A per-channel fake quantization's output and the constants its gradients need."""

    out: torch.Tensor
    constants: torch.Tensor
    """``(channels, 3)``: each channel's clamped step, its reciprocal and its zero point."""
    has_offset: bool


def per_channel_forward(
    x: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None, qmin: int, qmax: int
) -> PerChannelResult:
    """Fake-quantize ``x`` per channel (dim 0): ``s·(clamp(round(x·(1/s)) + z) − z)``.

    The forward rounds x·(1/s) and then adds the integer zero point, as
    torch.fake_quantize_per_channel_affine does: rounding z + x·(1/s) instead differs where
    the float32 addition moves a value across a rounding tie. Contiguous float32 tensors
    take the one-pass kernel (:mod:`supernet.quantizers.lsq_kernels`), with the same operations.
    """
    source = x.detach()
    if all(
        lsq_row_kernels.per_channel_servable(tensor)
        for tensor in (source, step.detach(), source if offset is None else offset.detach())
    ):
        rows = lsq_row_kernels.quantize_rows(
            source.reshape(-1),
            _layer_rows(x, qmin, qmax, offset is not None),
            step,
            MIN_STEP,
            step if offset is None else offset,
        )
        return PerChannelResult(rows.out.view(x.shape), rows.constants, offset is not None)
    shape = (-1,) + (1,) * (x.dim() - 1)
    step_value = step.detach().clamp_min(MIN_STEP)
    reciprocal = torch.reciprocal(step_value)
    scaled = source * reciprocal.view(shape)
    if offset is None:
        zero_point = torch.zeros_like(step_value)
        out = torch.round(scaled).clamp_(qmin, qmax)
    else:
        zero_point = torch.round(-offset.detach() / step_value).clamp_(qmin, qmax)
        zero_view = zero_point.view(shape)
        out = torch.round(scaled).add_(zero_view).clamp_(qmin, qmax).sub_(zero_view)
    out.mul_(step_value.view(shape))
    constants = torch.stack((step_value, reciprocal, zero_point), 1)
    return PerChannelResult(out, constants, offset is not None)


def per_channel_mask(
    grad: torch.Tensor,
    x: torch.Tensor,
    result: PerChannelResult,
    qmin: int,
    qmax: int,
    *,
    in_place: bool = False,
) -> torch.Tensor:
    """``grad · m`` for a per-channel entry. The mask works on the shifted scale
    ``x·(1/s) + z``, where the grid bounds are the constants qmin/qmax for every channel, so
    it is one hardtanh_backward (into ``grad`` itself when ``in_place``)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    shifted = x.detach() * result.constants[:, 1].view(shape)
    if result.has_offset:
        shifted += result.constants[:, 2].view(shape)
    if in_place:
        masked = torch.ops.aten.hardtanh_backward.grad_input(
            grad, shifted, qmin, qmax, grad_input=grad
        )
    else:
        masked = torch.ops.aten.hardtanh_backward(grad, shifted, qmin, qmax)
    # s − s + z − z: 0, or NaN for a NaN or infinite step or a NaN offset, whose rows'
    # gradients are then NaN (NaN in, NaN out; autograd of round(clamp(x/s))·s gives NaN for
    # such a step); a pass over a weight, without a host synchronisation
    steps, zero_points = result.constants[:, 0], result.constants[:, 2]
    guard = (steps - steps) + (zero_points - zero_points)
    return masked.add_(guard.to(masked.dtype).view(shape))


def per_channel_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    result: PerChannelResult,
    qmin: int,
    qmax: int,
    grad_scale: float,
    *,
    in_place: bool = False,
    chain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Sum]:
    """The gradients of a per-channel entry: ``g·m``, the steps', the offsets' (or None)
    and ``Σ g·x_hat`` over the whole tensor.

    The step gradient per channel is ``(Σ g·x_hat − Σ g·m·x)/s + z·Σ g·(1−m)`` and the
    offset's ``Σ g·(1−m)``, both times ``grad_scale`` (and the step's times ``chain``, the
    step itself for a step learned as its logarithm). ``in_place`` writes ``g·m`` over
    ``grad`` (a buffer nobody else holds). Contiguous float32 tensors take the one-pass
    kernel, with float64 sums.
    """
    source = x.detach()
    channels = x.shape[0]
    if (
        lsq_row_kernels.per_channel_servable(source)
        and grad.dtype == result.constants.dtype == torch.float32
    ):
        if in_place:
            buffer = grad.contiguous()
        else:
            buffer = grad.clone(memory_format=torch.contiguous_format)
        grad_step, offset_values, totals = lsq_row_kernels.row_gradients(
            buffer.view(-1),
            source.view(-1),
            _layer_rows(x, qmin, qmax, result.has_offset),
            result.constants,
            np.full(channels, grad_scale),
            chain,
        )
        return (
            buffer,
            grad_step,
            offset_values if result.has_offset else None,
            float(totals.sum()),
        )
    flat_grad = grad.reshape(channels, -1)
    grad_dot_out = (flat_grad * result.out.reshape(channels, -1)).sum(1)
    grad_sum = flat_grad.sum(1) if result.has_offset else None
    grad_x = per_channel_mask(grad, x, result, qmin, qmax, in_place=in_place)
    flat_grad_x = grad_x.reshape(channels, -1)
    masked_dot = (flat_grad_x * source.reshape(channels, -1)).sum(1)
    grad_step = (grad_dot_out - masked_dot) / result.constants[:, 0]
    grad_offset = None
    if grad_sum is not None:
        clipped = grad_sum - flat_grad_x.sum(1)
        grad_step += result.constants[:, 2] * clipped
        grad_offset = clipped * grad_scale
    grad_step *= grad_scale
    if chain is not None:
        grad_step *= chain.detach()
    return grad_x, grad_step, grad_offset, grad_dot_out.sum()
