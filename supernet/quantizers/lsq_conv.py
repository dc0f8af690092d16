"""A convolution of an LSQ+ fake-quantized input and weight as one autograd Function.

Training computes ``conv(x_hat, w_hat) + b`` with ``x_hat``, ``w_hat`` the fake-quantized input
and weight (:mod:`supernet.quantizers.fake_quant`), and then needs the LSQ step gradient of
the input, ``Σ g·x_hat − Σ g·m·x`` over the whole activation (``g`` the gradient at
``x_hat``). As one Function the backward has both sides of the convolution at hand, and
since the convolution is bilinear, ``Σ g·x_hat = Σ G·conv(x_hat, w_hat) = Σ g_w·w_hat``
(``G`` the output gradient, ``g_w`` the gradient at ``w_hat``): the first sum becomes one over
the weight, a few thousand values instead of a pass over a megabyte-sized activation, and the
weight's own per-channel step gradient needs the same sums. The clip mask is applied in place
to the gradient buffers the convolution backward has just made, so the backward allocates
nothing the convolution does not.

On ResNet-20 at batch 64 this halves the input quantizers' backward (7.9 → 4.2 ms of a 130 ms
step) and replaces four autograd nodes per layer (input and weight quantizers, their ``exp``)
by one. The values are those of the separate quantizers; only float32 summation order differs
(tested against the composed path).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from supernet.quantizers import integer_conv, level_conv, lsq_kernels
from supernet.quantizers.base import ConvGeometry, compute_dtype
from supernet.quantizers.fake_quant import (
    per_tensor_forward,
    per_tensor_levels,
    per_tensor_mask_and_sums,
    per_tensor_parameter_gradients,
)
from supernet.quantizers.lsq_constants import Sum, as_sum, per_tensor_constants
from supernet.quantizers.per_channel_fake_quant import (
    PerChannelResult,
    per_channel_backward,
    per_channel_forward,
)


class LsqGrids(NamedTuple):
    """The integer grids and LSQ gradient scales of the input and the weight."""

    input_qmin: int
    input_qmax: int
    input_grad_scale: float
    weight_qmin: int
    weight_qmax: int
    weight_grad_scale: float


def _dot(first: torch.Tensor, second: torch.Tensor) -> Sum:
    """``Σ first·second`` as a :data:`~supernet.quantizers.fake_quant.Sum`."""
    return as_sum(torch.dot(first.reshape(-1), second.reshape(-1)))


class _LsqConv2d(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        input_log_step: torch.Tensor,
        input_offset: torch.Tensor | None,
        weight_log_step: torch.Tensor | None,
        weight_offset: torch.Tensor | None,
        grids: LsqGrids,
        geometry: ConvGeometry,
        quantized_weight_levels: integer_conv.WeightLevels | None,
    ) -> torch.Tensor:
        saved = [x, weight]
        ctx.input_dtype = x.dtype
        x = x.to(compute_dtype(x.dtype))  # under autocast a bfloat16 activation: exact
        constants = per_tensor_constants(
            input_log_step.exp(), input_offset, grids.input_qmin, grids.input_qmax, x.dtype
        )
        source = x.detach()
        numbers = constants.numbers()
        # the forward's convolution on the operands' integer grids where it can (see
        # supernet.quantizers.integer_conv): symmetric weights, on the host path
        integer = numbers is not None and integer_conv.servable(
            source,
            weight.shape,
            geometry,
            grids.input_qmax - grids.input_qmin,
            grids.weight_qmin,
            grids.weight_qmax,
        )
        weight_constants = None
        weight_levels = None
        # under bfloat16 autocast: the convolution on the levels (supernet.quantizers.level_conv)
        on_levels = not integer and level_conv.autocast_levels(
            x,
            grids.input_qmax - grids.input_qmin + 1,
            grids.weight_qmax - grids.weight_qmin + 1,
        )
        weight_operands: tuple[torch.Tensor, torch.Tensor] | None = None
        if weight_log_step is None:  # quantized already (see supernet.quantizers.lsq_weights)
            w_hat = weight
            weight_levels = quantized_weight_levels
            if on_levels and weight_levels is not None:
                weight_operands = (
                    weight_levels.levels.to(level_conv.LEVEL_DTYPE),
                    weight_levels.steps,
                )
        elif weight_log_step.numel() == 1:  # lsq_fake_quantize's dispatch: one step per tensor
            weight_constants = per_tensor_constants(
                weight_log_step.exp(),
                weight_offset,
                grids.weight_qmin,
                grids.weight_qmax,
                weight.dtype,
            )
            w_hat = per_tensor_forward(weight, weight_constants)
            if on_levels:
                weight_operands = level_conv.weight_operands(
                    w_hat, torch.as_tensor(weight_constants.step), weight_constants.reciprocal
                )
            weight_numbers = weight_constants.numbers()
            if integer and weight_numbers is not None and weight_numbers.zero_point == 0:
                weight_levels = integer_conv.WeightLevels.per_tensor(
                    w_hat, weight_numbers.step, weight_numbers.reciprocal
                )
        else:
            weight_step = weight_log_step.exp()
            result = per_channel_forward(
                weight, weight_step, weight_offset, grids.weight_qmin, grids.weight_qmax
            )
            w_hat = result.out
            saved += [weight_step, result.constants]
            if on_levels:
                weight_operands = level_conv.weight_operands(
                    w_hat, result.constants[:, 0], result.constants[:, 1]
                )
            if integer and weight_offset is None:
                weight_levels = integer_conv.WeightLevels.per_channel(w_hat, result.constants)
        out = None
        ctx.channel_count = len(saved) - 2
        ctx.level_step = None
        if weight_operands is not None:
            operands = level_conv.LevelOperands(
                per_tensor_levels(x, constants).to(level_conv.LEVEL_DTYPE), *weight_operands
            )
            out = level_conv.level_conv2d(operands, constants.step, bias, geometry)
            ctx.save_for_backward(operands.levels, w_hat, *saved, *operands[1:])
            ctx.level_step = constants.step
        elif integer and numbers is not None and weight_levels is not None:
            x_hat, levels = lsq_kernels.fake_quantize_levels(
                source, numbers.step, numbers.reciprocal, numbers.low, numbers.high
            )
            if levels is not None:  # None: a NaN, which only the float convolution carries
                out = integer_conv.integer_conv2d(
                    levels, numbers.step, numbers.low, weight_levels, bias, geometry
                )
        else:
            x_hat = per_tensor_forward(x, constants)
        if weight_operands is None:
            if geometry.channels_last:  # as the layers' plain path (see supernet.networks.layers)
                x_hat = x_hat.to(memory_format=torch.channels_last)
                w_hat = w_hat.to(memory_format=torch.channels_last)
            if out is None:
                out = geometry.convolve_as_is(x_hat, w_hat, bias)
            ctx.save_for_backward(x_hat, w_hat, *saved)
        ctx.constants = (constants, weight_constants, grids, geometry, bias is not None)
        ctx.weight_quantized = weight_log_step is None
        ctx.offsets = (input_offset is not None, weight_offset is not None)
        assert out is not None
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad_out,) = grads
        x_hat, w_hat, x, weight, *rest = ctx.saved_tensors
        channel_saved, level_saved = rest[: ctx.channel_count], rest[ctx.channel_count :]
        x = x.to(compute_dtype(x.dtype))
        constants, weight_constants, grids, geometry, has_bias = ctx.constants
        input_has_offset, weight_has_offset = ctx.offsets
        needs = ctx.needs_input_grad
        need_input_params = needs[3] or needs[4]
        need_weight_params = needs[5] or needs[6]
        output_mask = [
            needs[0] or need_input_params,
            needs[1] or need_input_params or need_weight_params,
            needs[2],
        ]
        if ctx.level_step is None:
            grad_x_hat, grad_w_hat, grad_bias = geometry.convolution_backward(
                grad_out, x_hat, w_hat, has_bias, output_mask
            )
        else:  # x_hat holds the input's levels (supernet.quantizers.level_conv)
            grad_x_hat, grad_w_hat, grad_bias = level_conv.level_conv2d_backward(
                grad_out,
                level_conv.LevelOperands(x_hat, *level_saved),
                ctx.level_step,
                has_bias,
                geometry,
                output_mask,
            )
            if grad_bias is not None:
                grad_bias = grad_bias.to(weight.dtype)
        # The input step's gradient is Σ g·x_hat − Σ g·m·x, a small difference of two large
        # sums. In float32 the first may come from the weight's side (see the module
        # docstring); from bfloat16 convolutions its rounding there differs from the input
        # side's and the difference would be lost, so it is summed on the input's side, with
        # the same gradient as the second.
        input_dot: Sum | None = None
        if ctx.level_step is not None and need_input_params:
            input_dot = as_sum((grad_x_hat * x_hat).sum()) * ctx.level_step
        # the weight first: its sums give the input's Σ g·x_hat = Σ g_w·w_hat in total (the
        # convolution is bilinear; see the module docstring)
        grad_weight = grad_weight_step = grad_weight_offset = None
        grad_dot_w_hat: Sum | None = None
        if ctx.weight_quantized:  # the weight's quantization has its own node
            grad_weight = grad_w_hat
            if need_input_params:
                grad_dot_w_hat = _dot(grad_w_hat, w_hat)
        elif needs[1] or need_weight_params or need_input_params:
            if weight_constants is None:  # per channel
                weight_step, channel_constants = channel_saved
                grad_weight, grad_weight_step, grad_weight_offset, grad_dot_w_hat = (
                    per_channel_backward(
                        grad_w_hat,
                        weight,
                        PerChannelResult(w_hat, channel_constants, weight_has_offset),
                        grids.weight_qmin,
                        grids.weight_qmax,
                        grids.weight_grad_scale,
                        in_place=True,
                        chain=weight_step,
                    )
                )
            else:
                grad_dot_w_hat = _dot(grad_w_hat, w_hat)
                grad_weight, masked_dot, clipped = per_tensor_mask_and_sums(
                    grad_w_hat,
                    weight,
                    weight_constants,
                    in_place=True,
                    clipped_sum=weight_has_offset and need_weight_params,
                )
                if need_weight_params:
                    grad_weight_step, grad_weight_offset = per_tensor_parameter_gradients(
                        grad_dot_w_hat,
                        masked_dot,
                        clipped,
                        weight_constants,
                        grids.weight_grad_scale,
                        weight,
                        log_step=True,
                    )
        grad_x = grad_input_step = grad_input_offset = None
        if needs[0] or need_input_params:
            grad_x, masked_dot, clipped = per_tensor_mask_and_sums(
                grad_x_hat,
                x,
                constants,
                in_place=True,
                clipped_sum=input_has_offset and need_input_params,
            )
            if need_input_params:
                if input_dot is None:
                    input_dot = grad_dot_w_hat
                assert input_dot is not None
                grad_input_step, grad_input_offset = per_tensor_parameter_gradients(
                    input_dot,
                    masked_dot,
                    clipped,
                    constants,
                    grids.input_grad_scale,
                    x,
                    log_step=True,
                )
        if grad_x is not None:
            grad_x = grad_x.to(ctx.input_dtype)
        return (
            grad_x if needs[0] else None,
            grad_weight if needs[1] else None,
            grad_bias if needs[2] else None,
            grad_input_step if needs[3] else None,
            grad_input_offset if needs[4] else None,
            grad_weight_step if needs[5] else None,
            grad_weight_offset if needs[6] else None,
            None,
            None,
            None,
        )


def lsq_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    input_log_step: torch.Tensor,
    input_offset: torch.Tensor | None,
    weight_log_step: torch.Tensor | None,
    weight_offset: torch.Tensor | None,
    grids: LsqGrids,
    geometry: ConvGeometry,
    quantized_weight_levels: integer_conv.WeightLevels | None = None,
) -> torch.Tensor:
    """``F.conv2d`` of the LSQ+ fake-quantized input and weight, as one autograd node.

    Equal to ``F.conv2d(lsq_fake_quantize(x, exp(input_log_step), input_offset, ...),
    lsq_fake_quantize(weight, exp(weight_log_step), weight_offset, ...), bias, ...)`` in value
    (up to float32 rounding where the forward convolves on the integer grids, see
    :mod:`supernet.quantizers.integer_conv`) and, up to float summation order, in every
    gradient.

    Args:
        x: the input activation (quantized per tensor).
        weight: the latent weight (or the active slice of an elastic one), or the weight
            quantized already when ``weight_log_step`` is None.
        bias: the bias, or None.
        input_log_step, input_offset: the input entry's log step ``(1,)`` and offset or None.
        weight_log_step, weight_offset: the weight entry's log steps (one per output channel,
            or one) and offsets or None; None, None for a weight quantized already (by
            :func:`supernet.quantizers.lsq_weights.quantize_weights`, whose node then takes
            the weight's gradient).
        grids: the integer grids and LSQ gradient scales.
        geometry: stride, zero padding, dilation, groups, and whether to compute channels-last.
        quantized_weight_levels: a weight quantized already: its levels where it is symmetric
            (from the same node), else None.
    """
    return _LsqConv2d.apply(  # type: ignore[no-any-return]
        x,
        weight,
        bias,
        input_log_step,
        input_offset,
        weight_log_step,
        weight_offset,
        grids,
        geometry,
        quantized_weight_levels,
    )
