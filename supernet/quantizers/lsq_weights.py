"""Every layer's per-channel LSQ+ weight quantization of one forward as one autograd node.

A training step quantizes each conv layer's weight, a few thousand values, and in its backward
masks the weight's gradient and sums it per channel. Done per layer, that is one kernel call
each way per layer, and each call runs between two large convolutions that have pushed the
interpreter's, torch's and numba's code and data out of the caches: on ResNet-20, about 0.1 ms
per call whatever the weight's size (measured 135 µs for a 16×16×3×3 weight after touching
64 MB, 15 µs without). Here the weights of all layers are quantized by one kernel call over
their values laid end to end, and their gradients come back through one call at the end of
the backward (autograd runs this node's backward once every layer has sent its weight's
gradient). Values and gradients are those of :func:`supernet.quantizers.fake_quant.
lsq_fake_quantize` with the step learned as its logarithm (tested): the same float32
operations per row, float64 sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from supernet.quantizers import lsq_row_kernels
from supernet.quantizers.integer_conv import WeightLevels
from supernet.quantizers.lsq_constants import MIN_STEP


class WeightEntry(NamedTuple):
    """One layer's weight and the per-channel LSQ+ entry that quantizes it."""

    weight: torch.Tensor
    log_step: torch.Tensor
    """One log step per output channel (dim 0 of the weight)."""
    offset: torch.Tensor | None
    qmin: int
    qmax: int
    grad_scale: float


def batchable(entry: WeightEntry) -> bool:
    """Whether the shared kernels can take ``entry``: contiguous float32 CPU tensors, one
    step (and offset) per output channel."""
    channels = entry.weight.shape[0]
    return (
        lsq_row_kernels.per_channel_servable(entry.weight.detach())
        and entry.log_step.shape == (channels,)
        and entry.log_step.dtype == torch.float32
        and (entry.offset is None or entry.offset.shape == (channels,))
        and (entry.offset is None or entry.offset.dtype == torch.float32)
    )


class _Layout(NamedTuple):
    shapes: tuple[torch.Size, ...]
    rows: lsq_row_kernels.Rows
    grad_scale: np.ndarray
    has_offset: tuple[bool, ...]


def _layout(entries: Sequence[WeightEntry]) -> _Layout:
    shapes = tuple(entry.weight.shape for entry in entries)
    rows = lsq_row_kernels.layer_rows(
        tuple(
            (
                shape[0],
                entry.weight.numel() // shape[0],
                entry.qmin,
                entry.qmax,
                entry.offset is not None,
            )
            for shape, entry in zip(shapes, entries, strict=True)
        )
    )
    grad_scale = np.repeat(
        np.array([entry.grad_scale for entry in entries]), [shape[0] for shape in shapes]
    )
    has_offset = tuple(entry.offset is not None for entry in entries)
    return _Layout(shapes, rows, grad_scale, has_offset)


class _PerChannelLsqWeights(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, layout: _Layout, not_a_number: list[int], *tensors: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        count = len(layout.shapes)
        weights, log_steps = tensors[:count], tensors[count : 2 * count]
        offsets = iter(tensors[2 * count :])
        flat = torch.cat([weight.detach().reshape(-1) for weight in weights])
        steps = torch.cat([log_step.detach() for log_step in log_steps]).exp()
        # a row without an offset reads none: its slot holds the step as a placeholder
        offset_values = torch.cat(
            [
                next(offsets).detach() if present else log_step.detach()
                for present, log_step in zip(layout.has_offset, log_steps, strict=True)
            ]
        )
        out, constants, levels, not_a_number[0] = lsq_row_kernels.quantize_rows(
            flat, layout.rows, steps, MIN_STEP, offset_values
        )
        ctx.save_for_backward(flat, steps, constants)
        ctx.layout = layout
        # and for each layer's integer convolution, its steps and int8 levels (no gradients)
        sizes = [shape.numel() for shape in layout.shapes]
        steps_out = constants[:, 0].contiguous().split([shape[0] for shape in layout.shapes])
        levels_out = [
            piece.view(shape)
            for piece, shape in zip(levels.split(sizes), layout.shapes, strict=True)
        ]
        ctx.mark_non_differentiable(*steps_out, *levels_out)
        return (
            *(
                piece.view(shape)
                for piece, shape in zip(out.split(sizes), layout.shapes, strict=True)
            ),
            *steps_out,
            *levels_out,
        )

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        flat, steps, constants = ctx.saved_tensors
        layout: _Layout = ctx.layout
        # a new buffer: the kernel writes the masked gradient over it (the constants' rows,
        # the other outputs, have none)
        grad = torch.cat([piece.reshape(-1) for piece in grads[: len(layout.shapes)]])
        grad_step, grad_offset, _ = lsq_row_kernels.row_gradients(
            grad, flat, layout.rows, constants, layout.grad_scale, steps
        )
        channels = [shape[0] for shape in layout.shapes]
        grad_weights = [
            piece.view(shape)
            for piece, shape in zip(
                grad.split([shape.numel() for shape in layout.shapes]), layout.shapes, strict=True
            )
        ]
        grad_offsets = [
            piece
            for piece, present in zip(grad_offset.split(channels), layout.has_offset, strict=True)
            if present
        ]
        return (None, None, *grad_weights, *grad_step.split(channels), *grad_offsets)


class SharedWeights(NamedTuple):
    """What :func:`quantize_weights` returns, one item per entry in each field."""

    weights: tuple[torch.Tensor, ...]
    """The fake-quantized weights."""
    levels: tuple[WeightLevels | None, ...]
    """Each symmetric weight's channel steps and int8 levels ``weight / step`` (no
    gradients), for an integer convolution; None for an entry with an offset (its zero
    points shift the levels), and for all where a weight held a NaN (no level holds one)."""


def quantize_weights(entries: Sequence[WeightEntry]) -> SharedWeights:
    """Each entry's fake-quantized weight and, for a symmetric one, its levels, all from one
    autograd node.

    Equal in value to ``lsq_fake_quantize(weight, exp(log_step), offset, qmin, qmax,
    grad_scale)`` per entry and, up to float summation order, in every gradient.

    Args:
        entries: the layers' weights and entries, each :func:`batchable`.
    """
    layout = _layout(entries)
    offsets = [entry.offset for entry in entries if entry.offset is not None]
    not_a_number = [0]
    outputs = _PerChannelLsqWeights.apply(
        layout,
        not_a_number,
        *(entry.weight for entry in entries),
        *(entry.log_step for entry in entries),
        *offsets,
    )
    count = len(entries)
    levels = tuple(
        None if not_a_number[0] or entry.offset is not None else WeightLevels(steps, weight_levels)
        for entry, steps, weight_levels in zip(
            entries, outputs[count : 2 * count], outputs[2 * count :], strict=True
        )
    )
    return SharedWeights(tuple(outputs[:count]), levels)
