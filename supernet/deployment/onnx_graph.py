"""Rewrites of exported ONNX graphs: BN folding into per-channel QDQ convs, pruning."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from eqsearch.errors import InputError


def count_nodes(model: Any, op_type: str) -> int:
    """Nodes of ``op_type`` in the main graph of an ``onnx.ModelProto``."""
    return sum(1 for node in model.graph.node if node.op_type == op_type)


class _Graph:
    """Lookups over a graph: producers, use counts, constants (through Identity aliases)."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self._to_array = numpy_helper.to_array
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.uses: Counter[str] = Counter(name for node in graph.node for name in node.input)
        self.uses.update(output.name for output in graph.output)
        self.aliases = {
            node.output[0]: node.input[0]
            for node in graph.node
            if node.op_type == "Identity" and node.input[0] in self.initializers
        }

    def constant(self, name: str) -> np.ndarray | None:
        name = self.aliases.get(name, name)
        tensor = self.initializers.get(name)
        return None if tensor is None else np.asarray(self._to_array(tensor))

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        unique, index = name, 0
        while unique in self.initializers or unique in self.producers:
            index += 1
            unique = f"{name}_{index}"
        tensor = numpy_helper.from_array(value, unique)
        self.graph.initializer.append(tensor)
        self.initializers[unique] = tensor
        return unique


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _fold_one(graph: _Graph, norm: Any) -> bool:
    """Fold one BatchNormalization into its Conv's per-channel weight scales, if exact."""
    conv = graph.producers.get(norm.input[0])
    if conv is None or conv.op_type != "Conv" or len(norm.output) != 1:
        return False
    if graph.uses[conv.output[0]] != 1:
        return False
    dequantize = graph.producers.get(conv.input[1])
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return False
    if graph.uses[dequantize.output[0]] != 1 or _attribute(dequantize, "axis", 1) != 0:
        return False
    scale = graph.constant(dequantize.input[1])
    gamma, beta, mean, var = (graph.constant(name) for name in norm.input[1:5])
    if scale is None or scale.ndim != 1 or gamma is None or beta is None:
        return False
    if mean is None or var is None or _attribute(norm, "training_mode", 0):
        return False
    epsilon = float(_attribute(norm, "epsilon", 1e-5))
    factor = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + epsilon)
    # A negative factor would need a negative scale (or negated integers that may leave the
    # grid); such BN layers stay nodes.
    if factor.shape != scale.shape or not np.all(np.isfinite(factor)) or np.any(factor <= 0):
        return False
    has_bias = len(conv.input) > 2 and conv.input[2] != ""
    bias = graph.constant(conv.input[2]) if has_bias else np.zeros_like(factor)
    if bias is None:
        return False
    new_scale = (scale.astype(np.float64) * factor).astype(np.float32)
    new_bias = ((bias.astype(np.float64) - mean) * factor + beta).astype(np.float32)
    dequantize.input[1] = graph.add_initializer(f"{dequantize.input[0]}.folded_scale", new_scale)
    bias_name = graph.add_initializer(f"{dequantize.input[0]}.folded_bias", new_bias)
    if has_bias:
        conv.input[2] = bias_name
    else:
        conv.input.append(bias_name)
    conv.output[0] = norm.output[0]
    graph.graph.node.remove(norm)
    return True


def prune_unused(model: Any) -> None:
    """Drop nodes whose outputs nothing reads and initializers no node reads."""
    graph = model.graph
    while True:
        uses = {name for node in graph.node for name in node.input}
        uses.update(output.name for output in graph.output)
        dead = [node for node in graph.node if not any(out in uses for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    uses = {name for node in graph.node for name in node.input}
    uses.update(output.name for output in graph.output)
    for tensor in [t for t in graph.initializer if t.name not in uses]:
        graph.initializer.remove(tensor)


def fold_batch_norms(model: Any, *, enabled: bool = True) -> tuple[int, int]:
    """Fold BatchNormalization nodes into per-channel QDQ convs where exact (in place).

    A BN reading only a Conv whose weight is a per-channel DequantizeLinear becomes part of
    the weight scales (``scale·γ/σ``) and the conv bias (``(b − μ)·γ/σ + β``); the integer
    weights stay as they are. Returns ``(folded, kept)`` counts of BN nodes.
    """
    norms = [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    folded = 0
    if enabled:
        for norm in norms:
            graph = _Graph(model.graph)
            if _fold_one(graph, norm):
                folded += 1
        prune_unused(model)
    return folded, len(norms) - folded


INT4_OPSET = 21
"""DequantizeLinear reads INT4 tensors from opset 21 on."""
WEIGHT_INTEGERS_SUFFIX = ".weight.integers"
"""How the deploy graph names a quantized layer's weight integers."""


def _constant_node_value(graph: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return np.asarray(numpy_helper.to_array(_attribute(node, "value", None)))
    return None


def _int4_tensor(name: str, values: np.ndarray) -> Any:
    """An INT4 TensorProto: two's-complement nibbles, two a byte, the first in the low nibble."""
    from onnx import TensorProto, helper

    nibbles = values.astype(np.int64).reshape(-1) & 0x0F
    if nibbles.size % 2:
        nibbles = np.append(nibbles, 0)
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()
    return helper.make_tensor(name, TensorProto.INT4, values.shape, packed, raw=True)


def store_int4_weights(model: Any, layers: set[str]) -> int:
    """Store the weight integers of ``layers`` as INT4 (in place; the model's opset ≥ 21).

    Each such layer's DequantizeLinear reads its integers and zero point from INT4 tensors
    (two values a byte) instead of int8; the values do not change, so neither does what the
    graph computes. Returns the number of layers rewritten.

    Raises:
        ValueError: the opset is below 21, or a layer's integers or zero point do not fit
            the 4-bit range [-8, 7].
    """
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < INT4_OPSET:
        raise InputError(f"INT4 weights need opset >= {INT4_OPSET}; the model has {opset}")
    graph = _Graph(model.graph)
    renames: list[tuple[Any, str, str]] = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith(WEIGHT_INTEGERS_SUFFIX):
            continue
        layer = node.input[0][: -len(WEIGHT_INTEGERS_SUFFIX)]
        integers = graph.constant(node.input[0])
        if layer not in layers or integers is None:
            continue
        zero_point = np.zeros((), dtype=np.int8)
        if len(node.input) > 2 and node.input[2]:
            value = graph.constant(node.input[2])
            if value is None:
                value = _constant_node_value(model.graph, node.input[2])
            if value is None:
                raise InputError(f"{layer}: the weight zero point is not a constant")
            zero_point = value
        for what, values in (("integers", integers), ("zero point", zero_point)):
            if values.size and (values.min() < -8 or values.max() > 7):
                raise InputError(f"{layer}: weight {what} do not fit INT4 [-8, 7]")
        weights = _int4_tensor(f"{layer}.weight.int4-pending", integers)
        zeros = _int4_tensor(f"{layer}.weight.zero_point.int4", zero_point)
        model.graph.initializer.extend([weights, zeros])
        renames.append((node, node.input[0], weights.name))
        inputs = [weights.name, node.input[1], zeros.name]
        del node.input[:]
        node.input.extend(inputs)
    prune_unused(model)
    # The integers keep their name (``<layer>.weight.integers``) once the int8 tensor is gone.
    pending = {tensor.name: tensor for tensor in model.graph.initializer}
    for node, name, pending_name in renames:
        pending[pending_name].name = name
        node.input[0] = name
    return len(renames)
