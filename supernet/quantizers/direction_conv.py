"""The convolution of a quantized input without gradient, whose quantizer still learns.

The first layer's input (the images) needs no gradient, but its quantizer's step (and offset)
do: ``∂L/∂p = ⟨g, D⟩`` with ``g`` the gradient at the quantized input ``x_hat`` and ``D =
∂x_hat/∂p`` (:meth:`supernet.quantizers.lsq.LsqQuantizer.input_directions`). Computing ``g``
means a backward-data convolution into three channels, which oneDNN runs slowly; the layers
instead used ``⟨G, W * D⟩`` (``G`` the output gradient), a forward convolution of each
direction plus element-wise passes over the output. Both are a weight gradient: the weight
gradient of a convolution over ``D`` is ``H = G ⋆ D`` and ``⟨G, W * D⟩ = Σ W·H``. So the
backward computes the weight gradient over ``x_hat`` (which the weight needs anyway) and one
more over each direction, and reads each parameter's gradient off ``Σ W·H``: no forward
convolution of a direction, no pass over the output. One weight-gradient call per direction,
not one over the directions stacked as input channels: oneDNN computes a three-channel
weight gradient (the images') several times faster per channel than a six- or nine-channel
one (``benchmarks/step_parts.py``: ResNet-20's first layer). For groups of one input channel
block per output (``groups == 1``) only; the layers keep the forward-convolution form
otherwise.
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
        out = geometry.convolve_as_is(x_hat, weight, bias)
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
        _, grad_weight, grad_bias = geometry.convolution_backward(
            grad_out, x_hat, weight, ctx.has_bias, [False, True, ctx.has_bias]
        )
        flat_weight = weight.reshape(-1)
        grad_parameters = []
        for direction, shape in zip(directions, ctx.parameter_shapes, strict=True):
            _, grad_direction, _ = geometry.convolution_backward(
                grad_out, direction, weight, False, [False, True, False]
            )
            total = torch.dot(grad_direction.reshape(-1), flat_weight)
            grad_parameters.append(total.reshape(shape))
        return (
            None,
            grad_weight,
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
