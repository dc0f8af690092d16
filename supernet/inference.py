"""Inference-time shortcuts for measuring subnets: weights quantized once, exact fast pooling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from supernet import inference_kernels
from supernet.elastic import Supernet
from supernet.layers import ElasticQuantLayer, FrozenOperands
from supernet.quantizers.fake_quant import MIN_STEP, integer_zero_point
from supernet.quantizers.lsq import LsqHandle, LsqQuantizer


def _lsq_input_quantizer(
    quantizer: LsqQuantizer, handle: LsqHandle
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The input quantization of an LSQ+ choice with its constants computed once: the
    one-pass kernel where it serves the tensor, the quantizer's own path elsewhere."""
    qmin, qmax = quantizer.input_grid(handle.a_bits, handle.a_symmetric)
    # The constants _PerTensorLsq.forward derives from the step and offset, in its order.
    step_value = float(np.float32(max(float(handle.a_log_step.detach().exp()), MIN_STEP)))
    reciprocal = float(np.float32(1.0) / np.float32(step_value))
    offset = None if handle.a_offset is None else float(handle.a_offset.detach())
    zero_point = integer_zero_point(step_value, offset, qmin, qmax)
    low, high = qmin - zero_point, qmax - zero_point

    def quantize_input(x: torch.Tensor) -> torch.Tensor:
        if inference_kernels.servable(x):
            return inference_kernels.fake_quantize(x, step_value, reciprocal, low, high)
        return quantizer.quantize_input(x, handle)

    return quantize_input


def _input_quantizer(
    layer: ElasticQuantLayer, handle: Any
) -> Callable[[torch.Tensor], torch.Tensor]:
    quantizer = layer.quantizer
    if isinstance(quantizer, LsqQuantizer) and isinstance(handle, LsqHandle):
        return _lsq_input_quantizer(quantizer, handle)
    return partial(quantizer.quantize_input, handle=handle)


@contextmanager
def frozen_weights(supernet: Supernet) -> Iterator[None]:
    """Inside: each elastic layer computes with its weight quantized once and its input
    quantization's constants fixed, for the subnet active on entry.

    The weights and quantizer parameters do not change while a subnet is measured, so the
    fake quantization of every weight (several tensor passes per layer and batch) is done once
    here by the quantizer's own ``quantize_weight``: the same numbers as the plain path. LSQ+
    inputs go through a one-pass kernel with the same float32 operations
    (:mod:`supernet.inference_kernels`). A layer takes the plain path where autograd is on,
    or when its choice or latent weight changes inside (another ``set_subnet``, an in-place
    update), so gradients are never cut and stale operands never used.
    """
    layers = list(supernet.elastic_layers().values())
    with torch.no_grad():
        for layer in layers:
            handle = layer.active.handle
            if handle is None:
                continue
            # the active weight: a dynamic layer's slice for the running architecture
            weight = layer.quantized_weight().detach()
            layer.active.frozen = FrozenOperands(
                handle, layer.weight._version, weight, _input_quantizer(layer, handle)
            )
    try:
        yield
    finally:
        for layer in layers:
            layer.active.frozen = None


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _plain_pool_geometry(pool: nn.MaxPool2d) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``(kernel, stride)`` of a pool without padding, dilation, ceil mode or indices."""
    if _pair(pool.padding) != (0, 0) or _pair(pool.dilation) != (1, 1):
        return None
    if pool.ceil_mode or pool.return_indices:
        return None
    kernel = _pair(pool.kernel_size)
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    return kernel, stride


def _strided_max_pool(x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor | None:
    """``pool(x)`` as elementwise maxima of strided views (None where that does not apply).

    The maximum is exact, so the result equals ``F.max_pool2d`` bit for bit (NaN propagates
    in both).
    """
    geometry = _plain_pool_geometry(pool)
    if geometry is None or x.dim() != 4:
        return None
    kernel, stride = geometry
    out_height = (x.shape[2] - kernel[0]) // stride[0] + 1
    out_width = (x.shape[3] - kernel[1]) // stride[1] + 1
    if out_height < 1 or out_width < 1:
        return None
    rows_span = stride[0] * (out_height - 1) + 1
    rows = x[:, :, 0 : rows_span : stride[0]]
    for offset in range(1, kernel[0]):
        rows = torch.maximum(rows, x[:, :, offset : offset + rows_span : stride[0]])
    columns_span = stride[1] * (out_width - 1) + 1
    out = rows[..., 0 : columns_span : stride[1]]
    for offset in range(1, kernel[1]):
        out = torch.maximum(out, rows[..., offset : offset + columns_span : stride[1]])
    return out.contiguous()


def _fast_pool_forward(pool: nn.MaxPool2d) -> Callable[[torch.Tensor], Any]:
    def forward(x: torch.Tensor) -> Any:
        if x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad):
            fast = _strided_max_pool(x, pool)
            if fast is not None:
                return fast
        return nn.MaxPool2d.forward(pool, x)

    return forward


@contextmanager
def fast_pooling(model: nn.Module) -> Iterator[None]:
    """Inside: ``nn.MaxPool2d`` layers without padding, dilation or ceil mode run as strided
    elementwise maxima on CPU tensors without autograd.

    torch's CPU max-pooling kernel also computes the argmax indices; on LeNet-5 it was more
    than half of a forward pass (12 ms for a 500×6×28×28 batch against 0.8 ms for two
    ``torch.maximum`` over strided views). The maximum is exact, so outputs are unchanged.
    """
    pools = [
        module
        for module in model.modules()
        if type(module) is nn.MaxPool2d and _plain_pool_geometry(module) is not None
    ]
    for pool in pools:
        pool.forward = _fast_pool_forward(pool)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for pool in pools:
            del pool.forward


@contextmanager
def fast_inference(supernet: Supernet) -> Iterator[None]:
    """Inside: :func:`frozen_weights` and :func:`fast_pooling` for the active subnet."""
    with frozen_weights(supernet), fast_pooling(supernet):
        yield
