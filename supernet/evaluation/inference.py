"""Inference-time shortcuts for measuring subnets: weights quantized once, exact fast pooling."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

from supernet.networks.elastic import Supernet
from supernet.networks.layers import ElasticQuantLayer, FrozenOperands
from supernet.quantizers.fake_quant import per_tensor_forward
from supernet.quantizers.lsq import LsqHandle, LsqQuantizer
from supernet.quantizers.lsq_constants import per_tensor_constants
from supernet.runtime import host_path


def _lsq_input_quantizer(
    quantizer: LsqQuantizer, handle: LsqHandle
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The input quantization of an LSQ+ choice with its constants computed once (the
    one-pass kernel where it serves the tensor; see :func:`per_tensor_forward`)."""
    qmin, qmax = quantizer.input_grid(handle.a_bits, handle.a_symmetric)
    step = handle.a_log_step.detach().exp()
    constants = per_tensor_constants(step, handle.a_offset, qmin, qmax, step.dtype)

    def quantize_input(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == step.dtype:
            return per_tensor_forward(x, constants)
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
    (:mod:`supernet.quantizers.lsq_kernels`). A layer takes the plain path where autograd is on,
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
        if host_path(x) and not (torch.is_grad_enabled() and x.requires_grad):
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


LAYER_CACHE_BYTES = 768 << 20
"""Default memory of a :class:`LayerOutputCache` (per process): LeNet-5's first layer on the
demo's 5,000 images takes 69 MB per choice, so all eight forms fit."""

LAYER_CACHE_TOTAL_BYTES = 1536 << 20
"""What the caches of one oracle's worker processes may take together (each its share, at
most :data:`LAYER_CACHE_BYTES`): 768 MiB each for 2 workers, 96 MiB each for 16."""


class LayerOutputCache:
    """Outputs of elastic layers whose input is a batch of fixed image tensors, kept from one
    subnet's measurement to the next.

    A layer that reads the images themselves (the first convolution) computes the same output
    for every subnet that gives it the same choice: in a space whose first layer is pinned to
    8 bits that is one output per form, for every subnet measured. Entries are keyed by the
    layer, its choice and mode, the versions of its parameters and buffers (an optimizer step
    or ``load_state_dict`` changes them) and the batch's place in the images; images changed
    in place empty the cache. Each hit returns a copy, so that in-place operations after the
    layer never reach the stored tensor. Least recently used entries go first beyond
    ``max_bytes``; only CPU outputs computed without autograd are cached. It serves images
    held in memory: the oracle turns it off for images streamed from disk (every pass brings
    new tensors, so nothing would be found again).

    Args:
        images: the tensors whose slices are the layers' inputs (the oracle's calibration and
            scoring images); the cache holds them, so their memory is never reused. Tensors
            made in inference mode are left out (they keep no version counter).
        max_bytes: memory of the stored outputs.
    """

    def __init__(self, images: Sequence[torch.Tensor], max_bytes: int = LAYER_CACHE_BYTES):
        # inference tensors keep no version counter: a change in place could not be seen
        self.images = [tensor for tensor in images if not tensor.is_inference()]
        self.max_bytes = max_bytes
        self._versions = [tensor._version for tensor in self.images]
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    def _input_key(self, x: torch.Tensor) -> Hashable | None:
        if not host_path(x) or torch.is_grad_enabled():  # gradients need the graph
            return None
        pointer = x.untyped_storage().data_ptr()
        for index, tensor in enumerate(self.images):
            if host_path(tensor) and tensor.untyped_storage().data_ptr() == pointer:
                if tensor._version != self._versions[index]:  # the images were changed
                    self.clear()
                    self._versions = [image._version for image in self.images]
                return (index, x.storage_offset(), tuple(x.shape), tuple(x.stride()), x.dtype)
        return None

    def clear(self) -> None:
        """Forget every stored output."""
        self._entries.clear()
        self._bytes = 0

    def forward(self, layer: ElasticQuantLayer, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)``, from the cache where ``x`` is a slice of the images."""
        compute: Callable[[torch.Tensor], torch.Tensor] = partial(type(layer).forward, layer)
        input_key = self._input_key(x)
        if input_key is None:
            return compute(x)
        tensors = list(itertools.chain(layer.parameters(), layer.buffers()))
        if any(tensor.is_inference() for tensor in tensors):
            return compute(x)
        versions = tuple(tensor._version for tensor in tensors)
        key = (id(layer), layer.active.choice, layer.training, versions, input_key)
        stored = self._entries.get(key)
        if stored is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return stored.clone()
        out = compute(x)
        size = out.numel() * out.element_size()
        if size <= self.max_bytes:
            while self._entries and self._bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.numel() * evicted.element_size()
            self._entries[key] = out.clone()
            self._bytes += size
        return out


@contextmanager
def cached_layer_outputs(supernet: Supernet, cache: LayerOutputCache) -> Iterator[None]:
    """Inside: every elastic layer's forward goes through ``cache`` (see
    :class:`LayerOutputCache`; only inputs that are slices of its images are cached)."""
    layers = list(supernet.elastic_layers().values())
    for layer in layers:
        layer.forward = partial(cache.forward, layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


@contextmanager
def fast_inference(supernet: Supernet, cache: LayerOutputCache | None = None) -> Iterator[None]:
    """Inside: :func:`frozen_weights` and :func:`fast_pooling` for the active subnet, and the
    layer outputs of ``cache`` where one is given."""
    with frozen_weights(supernet), fast_pooling(supernet):
        if cache is None:
            yield
        else:
            with cached_layer_outputs(supernet, cache):
                yield
