"""The convolution of a quantized input without gradient, whose quantizer still learns.

The first layer's input (the images) needs no gradient, but its quantizer's step (and offset)
do: ``∂L/∂p = ⟨g, D⟩`` with ``g`` the gradient at the quantized input ``x_hat`` and ``D =
∂x_hat/∂p`` (:meth:`supernet.quantizers.lsq.LsqQuantizer.input_directions`). Computing ``g``
means a backward-data convolution into three channels, which oneDNN runs slowly; the layers
instead used ``⟨G, W * D⟩`` (``G`` the output gradient), a forward convolution of each
direction plus element-wise passes over the output. Both are one weight gradient: the weight
gradient of a convolution over ``D`` is ``H = G ⋆ D`` and ``⟨G, W * D⟩ = Σ W·H``. So the
backward stacks ``x_hat`` and the directions as input channels of one weight-gradient
convolution (which it computes for the weight anyway) and reads each parameter's gradient off
its block of channels: no forward convolution of a direction, no pass over the output. For
groups of one input channel block per output (``groups == 1``) only; the layers keep the
forward-convolution form otherwise.
"""

from __future__ import annotations

from typing import Any

import torch

from eqsearch.errors import InputError
from supernet.quantizers.base import ConvGeometry


class _DirectionConv2d(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_hat: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        geometry: ConvGeometry,
        directions: tuple[torch.Tensor, ...],
        *parameters: torch.Tensor,
    ) -> torch.Tensor:
        with torch.autocast(device_type=x_hat.device.type, enabled=False):
            out = geometry.convolve(x_hat, weight, bias)
        ctx.save_for_backward(x_hat, weight, *directions)
        ctx.geometry = geometry
        ctx.has_bias = bias is not None
        ctx.parameter_shapes = [parameter.shape for parameter in parameters]
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad_out,) = grads
        x_hat, weight, *directions = ctx.saved_tensors
        geometry: ConvGeometry = ctx.geometry
        blocks = 1 + len(directions)
        stacked = torch.cat([x_hat, *directions], dim=1)
        # only the weight gradient is computed; the weight argument gives its shape
        _, grad_stacked, grad_bias = geometry.convolution_backward(
            grad_out,
            stacked,
            weight.repeat(1, blocks, 1, 1),
            ctx.has_bias,
            [False, True, ctx.has_bias],
        )
        pieces = grad_stacked.chunk(blocks, dim=1)
        flat_weight = weight.reshape(-1)
        grad_parameters = [
            torch.dot(piece.reshape(-1), flat_weight).reshape(shape)
            for piece, shape in zip(pieces[1:], ctx.parameter_shapes, strict=True)
        ]
        return (
            None,
            pieces[0].contiguous(),
            grad_bias if ctx.has_bias else None,
            None,
            None,
            *grad_parameters,
        )


def direction_conv2d(
    x_hat: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """``F.conv2d(x_hat, weight, bias, ...)`` whose backward also gives each parameter ``p``
    of ``pairs`` the gradient ``⟨∂L/∂x_hat, D⟩`` (``(D, p)`` pairs: the derivative of
    ``x_hat`` by ``p`` and ``p`` as the forward reads it, with its graph).

    ``x_hat`` and the directions take no gradient; ``geometry.groups`` must be 1.
    """
    if geometry.groups != 1:
        raise InputError(f"direction_conv2d needs geometry.groups == 1; got {geometry.groups}")
    directions = tuple(direction for direction, _ in pairs)
    return _DirectionConv2d.apply(  # type: ignore[no-any-return]
        x_hat.detach(),
        weight,
        bias,
        geometry,
        directions,
        *(parameter for _, parameter in pairs),
    )
