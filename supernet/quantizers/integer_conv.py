"""The training forward's convolution of fake-quantized operands on their integer grids (oneDNN).

A fused LSQ+ convolution (:mod:`supernet.quantizers.lsq_conv`) convolves ``x_hat = s·(u − z)``
and ``w_hat[c] = s_c·k`` (``u`` a uint8 grid index, ``k`` an int8 level): the same values as
``s·s_c·Σ (u − z)·k``, which oneDNN's int8 convolution computes with exact int32 sums and one
float32 scaling per output, where the float32 convolution rounds every product and partial sum.
The results differ by that float32 rounding only (the integer form is the closer of the two to
the exact value; tested); on this project's CPU (AVX-512 VNNI) the int8 call is 1.25–2.4×
faster at ResNet-20's 3×3 layers at batch 64. The backward is unchanged (float32 convolutions
of the saved ``x_hat`` and ``w_hat``).

Served (:func:`servable`): CPU float32 operands, symmetric weights (zero point 0) within int8,
input grids of at most 256 levels, zero padding, sums that int32 holds, and convolutions large
enough to pay for the int8 call (:data:`MIN_MULTIPLY_ADDS`). :func:`available` runs a probe the
first time, for dense and for grouped convolutions apart: the ops must exist in this torch build
and reproduce an exact reference at the extremes of the 8-bit grids (CPUs without VNNI sum pairs
of uint8·int8 products in int16 and saturate there). Operands holding a NaN convolve in float.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import NamedTuple

import torch

from supernet.quantizers import lsq_kernels
from supernet.quantizers.base import ConvGeometry

ENABLED = os.environ.get("EQSEARCH_INTEGER_CONV", "1").strip() != "0"
"""Whether the training forward may take the integer convolution (``EQSEARCH_INTEGER_CONV=0``
turns it off; the benchmarks flip this to measure both)."""


class WeightLevels(NamedTuple):
    """A symmetric fake-quantized weight as the integer convolution reads it."""

    steps: torch.Tensor
    """float32, one per output channel (the clamped steps), contiguous."""
    levels: torch.Tensor
    """int8, the weight's shape: ``w_hat / step`` of each channel."""

    @classmethod
    def per_channel(cls, weight: torch.Tensor, constants: torch.Tensor) -> WeightLevels | None:
        """The levels of a symmetric per-channel fake-quantized ``weight`` (``constants``:
        ``(channels, 3)``, each channel's clamped step, its reciprocal and zero point 0):
        ``w_hat·(1/s)`` lies within a few float32 ulps of the level, so rounding gives it.
        None for a weight holding a NaN."""
        reciprocal = constants[:, 1].view(-1, *([1] * (weight.dim() - 1)))
        return cls._of(weight, reciprocal, constants[:, 0].contiguous())

    @classmethod
    def per_tensor(
        cls, weight: torch.Tensor, step: float, reciprocal: float
    ) -> WeightLevels | None:
        """The levels of a symmetric per-tensor fake-quantized ``weight`` (its float32 step
        and reciprocal); None for a weight holding a NaN."""
        steps = torch.full((weight.shape[0],), step, dtype=torch.float32)
        return cls._of(weight, torch.tensor(reciprocal, dtype=torch.float32), steps)

    @classmethod
    def _of(
        cls, weight: torch.Tensor, reciprocal: torch.Tensor, steps: torch.Tensor
    ) -> WeightLevels | None:
        scaled = torch.round(weight.detach() * reciprocal)
        if bool(scaled.isnan().any()):
            return None
        return cls(steps, scaled.clamp_(-128, 127).to(torch.int8))


def _convolve(
    levels: torch.Tensor,
    input_step: float,
    input_zero_point: int,
    weight_levels: torch.Tensor,
    weight_steps: torch.Tensor,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
) -> torch.Tensor:
    # oneDNN reads the operands' memory as it is: dense tensors only
    weight_levels, weight_steps = weight_levels.contiguous(), weight_steps.contiguous()
    packed = torch.ops.onednn.qconv_prepack(
        weight_levels,
        weight_steps,
        input_step,
        input_zero_point,
        list(geometry.stride),
        list(geometry.padding),
        list(geometry.dilation),
        geometry.groups,
        list(levels.shape),
    )
    return torch.ops.onednn.qconv2d_pointwise(  # type: ignore[no-any-return]
        levels,
        input_step,
        input_zero_point,
        packed,
        weight_steps,
        torch.zeros(weight_steps.numel(), dtype=torch.long),
        bias,
        list(geometry.stride),
        list(geometry.padding),
        list(geometry.dilation),
        geometry.groups,
        1.0,
        0,
        torch.float32,
        "none",
        [],
        "",
    )


def _probe(groups: int) -> bool:
    # the grids' extremes, 64 input channels a group (dense) or one (depth-wise): the
    # products' pairs overflow int16 there
    generator = torch.Generator().manual_seed(0)
    channels = 64 if groups == 1 else 8
    levels = torch.randint(250, 256, (2, channels, 6, 6), generator=generator).to(torch.uint8)
    weight_levels = torch.randint(-128, -120, (8, channels // groups, 3, 3), generator=generator)
    weight_levels[::2] = 127
    weight_steps = torch.rand(8, generator=generator) * 0.01 + 0.001
    input_step, zero_point = 0.03125, 3
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), groups, False)
    try:
        out = _convolve(
            levels,
            input_step,
            zero_point,
            weight_levels.to(torch.int8),
            weight_steps,
            None,
            geometry,
        )
    except (RuntimeError, NotImplementedError, TypeError) as error:
        # the ops exist but refuse (their schema is torch's internal one): say so once
        warnings.warn(
            f"the integer convolution is off ({type(error).__name__}: {error}); training "
            "convolves in float32",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    exact = torch.nn.functional.conv2d(
        levels.double() - zero_point, weight_levels.double(), padding=1, groups=groups
    ) * (input_step * weight_steps.double().view(1, -1, 1, 1))
    return bool(torch.allclose(out.double(), exact, rtol=1e-6, atol=0.0))


@functools.cache
def available(grouped: bool = False) -> bool:
    """Whether this torch build and CPU compute the integer convolution exactly, dense or
    (``grouped``) grouped and depth-wise ones, which take other oneDNN kernels (probed once
    each)."""
    onednn = getattr(torch.ops, "onednn", None)
    if onednn is None or not all(
        hasattr(onednn, name) for name in ("qconv_prepack", "qconv2d_pointwise")
    ):
        return False
    return _probe(8) and _probe(2) if grouped else _probe(1)


MAX_PRODUCTS_PER_OUTPUT = (2**31 - 1) // (255 * 128)
"""The most products one output sums that int32 holds at the 8-bit grids' extremes."""

MIN_MULTIPLY_ADDS = 1 << 26
"""Smaller convolutions stay in float: oneDNN's int8 call costs 0.1–0.25 ms more than the
float one whatever its size (packing the weight, the primitive), which a convolution of 64
million multiply-adds (ResNet-20's 3×3 layers at batch 28) earns back (``benchmarks/step_parts.py``
prints both per size)."""


def multiply_adds(x: torch.Tensor, weight_shape: torch.Size, geometry: ConvGeometry) -> int:
    """The multiply-adds of convolving ``x`` (N, C, H, W) with a weight of ``weight_shape``."""
    out_channels, in_per_group, *kernel = weight_shape
    outputs = x.shape[0] * out_channels
    for size, length, stride, padding, dilation in zip(
        x.shape[2:], kernel, geometry.stride, geometry.padding, geometry.dilation, strict=True
    ):
        outputs *= max(0, (size + 2 * padding - dilation * (length - 1) - 1) // stride + 1)
    return outputs * in_per_group * kernel[0] * kernel[1]


def servable(
    x: torch.Tensor,
    weight_shape: torch.Size,
    geometry: ConvGeometry,
    input_steps: int,
    weight_qmin: int,
    weight_qmax: int,
) -> bool:
    """Whether the integer convolution takes the input ``x`` (without autograd) with a grid
    of ``input_steps + 1`` levels and a symmetric weight of ``weight_shape`` on
    ``[weight_qmin, weight_qmax]``, and is large enough to be faster
    (:data:`MIN_MULTIPLY_ADDS`)."""
    return (
        ENABLED
        and x.dim() == 4
        and len(weight_shape) == 4
        and input_steps <= 255
        and weight_qmin >= -128
        and weight_qmax <= 127
        and weight_shape[1] * weight_shape[2] * weight_shape[3] <= MAX_PRODUCTS_PER_OUTPUT
        and lsq_kernels.servable(x)
        and multiply_adds(x, weight_shape, geometry) >= MIN_MULTIPLY_ADDS
        and available(geometry.groups > 1)
    )


def integer_conv2d(
    levels: torch.Tensor,
    input_step: float,
    input_low: int,
    weight: WeightLevels,
    bias: torch.Tensor | None,
    geometry: ConvGeometry,
) -> torch.Tensor | None:
    """``conv(input_step·(levels + input_low), steps·weight_levels) + bias`` in int8 arithmetic.

    Args:
        levels: the input's grid indices (uint8, ``level − input_low``).
        input_step, input_low: the input's float32 step and the lowest level of its grid.
        weight: the symmetric fake-quantized weight's steps and levels.

    Returns:
        The float32 output in the layout of ``levels`` (oneDNN computes channels-last), or
        channels-last where ``geometry`` says so; None where oneDNN refuses the shapes
        (with a warning; the caller convolves in float).
    """
    try:
        out = _convolve(
            levels,
            input_step,
            -input_low,
            weight.levels,
            weight.steps,
            None if bias is None else bias.detach(),
            geometry,
        )
    except RuntimeError as error:
        warnings.warn(
            f"the integer convolution refused {tuple(levels.shape)} * "
            f"{tuple(weight.levels.shape)} ({error}); convolving in float32",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    if geometry.channels_last or (
        levels.is_contiguous(memory_format=torch.channels_last) and not levels.is_contiguous()
    ):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()
