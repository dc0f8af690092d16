"""A fused LSQ+ convolution under ``--amp bf16``: the operands' integer levels in bfloat16.

Autocast would cast the fake-quantized operands ``x_hat = s·q`` and ``w_hat[c] = s_c·k`` to
bfloat16, which rounds them off their grids (``s·q`` needs the bits of ``s`` and of ``q``).
Their levels are integers, and bfloat16's 8 significant bits hold every integer of magnitude
up to 256: all levels of grids of at most 8 bits, zero point included (``|q|, |k| ≤ 255``).
So under bfloat16 autocast the fused convolution convolves ``q`` and ``k`` in bfloat16 —
exact operands; GPUs and oneDNN multiply them exactly and accumulate in float32 — and scales
each output channel by ``s·s_c`` in float32 (with the bias) before rounding the result to
bfloat16, as an autocast convolution returns it. Its backward convolves the same levels with
the output gradient scaled by ``s·s_c``, and divides the results by the steps in float32.

Float16 is not used this way: its 11 significant bits hold the levels too, but the sums
``Σ q·k`` reach 10^8 (255·128 per product, thousands of products), far beyond float16's
largest value (65504), and rescaling them to fit gives up the exact operands' point. Under
float16 autocast, and for every other quantizer (N2UQ's levels ``α_in·s + α_out·k`` are not
integers), the quantized convolutions compute in float32.

Training turns this on with ``--amp bf16`` (:func:`bfloat16_levels`); under a plain
``torch.autocast`` the quantized convolutions compute in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from supernet.quantizers.base import ConvGeometry
from supernet.runtime import compiled

LEVEL_DTYPE = torch.bfloat16
MAX_LEVELS = 256
"""Grids of at most this many levels (8 bits): their levels minus a zero point are exact in
bfloat16."""


_enabled = False


@contextmanager
def bfloat16_levels(enabled: bool = True) -> Iterator[None]:
    """Inside: fused LSQ+ convolutions under bfloat16 autocast convolve their levels in
    bfloat16 (see the module docstring); the previous setting is restored on exit."""
    global _enabled
    previous = _enabled
    _enabled = enabled
    try:
        yield
    finally:
        _enabled = previous


def autocast_levels(x: torch.Tensor, input_levels: int, weight_levels: int) -> bool:
    """Whether a fused convolution of ``x`` with grids of ``input_levels`` and
    ``weight_levels`` levels convolves their levels in bfloat16: inside
    :func:`bfloat16_levels`, bfloat16 autocast on ``x``'s device and grids of at most
    :data:`MAX_LEVELS` levels."""
    device_type = x.device.type
    return (
        _enabled
        and torch.is_autocast_enabled(device_type)
        and torch.get_autocast_dtype(device_type) == LEVEL_DTYPE
        and input_levels <= MAX_LEVELS
        and weight_levels <= MAX_LEVELS
    )


class LevelOperands(NamedTuple):
    """The operands of a convolution on levels."""

    levels: torch.Tensor
    """The input's levels ``q`` (``x_hat = s·q``), bfloat16."""
    weight_levels: torch.Tensor
    """The weight's levels ``k`` (``w_hat[c] = s_c·k[c]``), bfloat16."""
    weight_steps: torch.Tensor
    """``s_c``, one per output channel, float32."""


def weight_operands(
    w_hat: torch.Tensor, steps: torch.Tensor, reciprocals: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, s_c)`` of a fake-quantized weight from its steps (one per output channel) and
    their reciprocals (one per channel or one): ``w_hat·(1/s)`` lies within a few float32
    ulps of the level, so rounding gives it."""
    shape = (-1,) + (1,) * (w_hat.dim() - 1)
    if isinstance(reciprocals, torch.Tensor) and reciprocals.dim() > 0:
        reciprocals = reciprocals.view(shape)
    levels = torch.round(w_hat.detach() * reciprocals).to(LEVEL_DTYPE)
    return levels, steps.detach().float().expand(w_hat.shape[0]).contiguous()


def _scales(input_step: torch.Tensor | float, weight_steps: torch.Tensor) -> torch.Tensor:
    return (weight_steps * input_step).view(1, -1, 1, 1)


@compiled
def _scaled(raw: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (raw * scales).to(LEVEL_DTYPE)


@compiled
def _scaled_with_bias(raw: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(bias.view(1, -1, 1, 1), raw, scales).to(LEVEL_DTYPE)


@compiled
def _scaled_gradient(grad_out: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (grad_out.float() * scales).to(LEVEL_DTYPE)


@compiled
def _divided(gradient: torch.Tensor, steps: Any) -> torch.Tensor:
    return gradient.float() / steps


def level_conv2d(
    operands: LevelOperands,
    input_step: torch.Tensor | float,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
) -> torch.Tensor:
    """``conv(s·q, s_c·k) + b`` as ``s·s_c·conv(q, k) + b``: the convolution in bfloat16 on
    exact levels, the scaling in float32; returned in bfloat16."""
    levels, weight_levels = operands.levels, operands.weight_levels
    if geometry.channels_last:
        levels = levels.to(memory_format=torch.channels_last)
        weight_levels = weight_levels.to(memory_format=torch.channels_last)
    raw = geometry.convolve_as_is(levels, weight_levels, None)
    scales = _scales(input_step, operands.weight_steps)
    if bias is None:
        return _scaled(raw, scales)
    return _scaled_with_bias(raw, scales, bias.detach().float())


def level_conv2d_backward(
    grad_out: torch.Tensor,
    operands: LevelOperands,
    input_step: torch.Tensor | float,
    has_bias: bool,
    geometry: ConvGeometry,
    output_mask: list[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The float32 gradients at ``x_hat``, at ``w_hat`` and of the bias (those
    ``output_mask`` asks for) of :func:`level_conv2d` for the output gradient ``grad_out``."""
    scales = _scales(input_step, operands.weight_steps)
    scaled = _scaled_gradient(grad_out, scales)
    grad_levels, grad_weight_levels, _ = geometry.convolution_backward(
        scaled,
        operands.levels,
        operands.weight_levels,
        False,
        [output_mask[0], output_mask[1], False],
    )
    grad_x_hat = grad_w_hat = grad_bias = None
    if output_mask[0]:
        grad_x_hat = _divided(grad_levels, input_step)
    if output_mask[1]:
        steps = operands.weight_steps.view((-1,) + (1,) * (grad_weight_levels.dim() - 1))
        grad_w_hat = _divided(grad_weight_levels, steps)
    if has_bias and output_mask[2]:
        grad_bias = grad_out.float().sum((0, 2, 3))
    return grad_x_hat, grad_w_hat, grad_bias
