"""The convolution of a quantized input without gradient, whose quantizer still learns.

The first layer's input (the images) needs no gradient, but its quantizer's step (and offset)
do: ``∂L/∂p = ⟨g, D⟩`` with ``g`` the gradient at the quantized input ``x_hat`` and ``D =
∂x_hat/∂p`` (:meth:`supernet.quantizers.lsq.LsqQuantizer.input_directions`). Computing ``g``
means a backward-data convolution into three channels, which oneDNN runs slowly; the layers
instead used ``⟨G, W * D⟩`` (``G`` the output gradient), a forward convolution of each
direction plus element-wise passes over the output. Both are a weight gradient: the weight
gradient of a convolution over ``D`` is ``H = G ⋆ D`` and ``⟨G, W * D⟩ = Σ W·H``. So the
backward computes weight gradients over ``x_hat`` (which the weight needs anyway) and over each
direction, and reads each parameter's gradient off ``Σ W·H``: no forward convolution of a
direction, no pass over the output. On the CPU one call takes at most three input channels:
oneDNN's weight gradient jumps from 0.43 ms for three channels to 1.52 ms for four (2.13 ms
for nine; ResNet-20's first layer at batch 64), so three-channel images take a call per block,
one-channel images one call for the image and its derivatives stacked as channels. Other
devices stack every block into one call. For ``groups == 1`` only; the layers keep the
forward-convolution form otherwise.
"""

from __future__ import annotations

from typing import Any

import torch

from eqsearch.errors import InputError
from supernet.quantizers.base import ConvGeometry
from supernet.runtime import host_path

CPU_CHANNELS_PER_CALL = 3
"""The most input channels one weight-gradient call takes on the CPU (see the module's
docstring)."""


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
        blocks = [x_hat, *directions]
        per_call = len(blocks)
        if host_path(x_hat):
            per_call = max(1, CPU_CHANNELS_PER_CALL // x_hat.shape[1])
        block_gradients: list[torch.Tensor] = []
        grad_bias = None
        for start in range(0, len(blocks), per_call):
            group = blocks[start : start + per_call]
            with_bias = ctx.has_bias and start == 0
            # only the weight gradient is computed; the weight argument gives its shape
            _, grad_group, group_bias = geometry.convolution_backward(
                grad_out,
                group[0] if len(group) == 1 else torch.cat(group, dim=1),
                weight if len(group) == 1 else weight.repeat(1, len(group), 1, 1),
                with_bias,
                [False, True, with_bias],
            )
            block_gradients.extend(grad_group.chunk(len(group), dim=1))
            if with_bias:
                grad_bias = group_bias
        grad_weight = block_gradients[0].contiguous()
        flat_weight = weight.reshape(-1)
        grad_parameters = [
            torch.dot(piece.reshape(-1), flat_weight).reshape(shape)
            for piece, shape in zip(block_gradients[1:], ctx.parameter_shapes, strict=True)
        ]
        return (
            None,
            grad_weight,
            grad_bias,
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
