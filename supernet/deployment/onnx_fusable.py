"""Rewrites that let a runtime fuse an exported QDQ graph into integer kernels, exactly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from supernet.deployment.onnx_graph import _attribute, _fold_one, _Graph, prune_unused

CLAMPS = ("Relu", "Clip")
"""Element-wise clamps: monotone, so they commute with quantization (see requantize)."""
DEQUANTIZED_SUFFIX = ".weight.dequantized"
"""How a float-fallback layer's precomputed float weight is named."""
_STORAGE = {2: (np.uint8, 0, 255), 3: (np.int8, -128, 127)}
"""ONNX element type (TensorProto.UINT8 = 2, INT8 = 3) → numpy type and range."""


@dataclass(frozen=True)
class FusableReport:
    """What :func:`make_fusable` changed.

    Attributes:
        folded_batch_norms, kept_batch_norms: BN nodes folded into their conv / left as nodes.
        bias_adds: conv bias ``Add`` nodes moved into the conv.
        requantized: QuantizeLinear nodes that now read a conv or matmul output directly (the
            clamps between moved behind them as integer ``Clip`` nodes).
        integer_clips: integer ``Clip`` nodes that keep a grid narrower than its storage.
        float_weights: layers whose weight is stored dequantized (their conv cannot fuse).
    """

    folded_batch_norms: int
    kept_batch_norms: int
    bias_adds: int
    requantized: int
    integer_clips: int
    float_weights: tuple[str, ...]


def _constant_value(model: Any, graph: _Graph, name: str) -> np.ndarray | None:
    """An initializer (through Identity aliases) or a Constant node's value."""
    value = graph.constant(name)
    if value is not None:
        return value
    from onnx import numpy_helper

    nodes: dict[str, Any] | None = getattr(graph, "constant_nodes", None)
    if nodes is None:
        nodes = {node.output[0]: node for node in model.graph.node if node.op_type == "Constant"}
        graph.constant_nodes = nodes  # type: ignore[attr-defined]
    node = nodes.get(name)
    tensor = None if node is None else _attribute(node, "value", None)
    return None if tensor is None else np.asarray(numpy_helper.to_array(tensor))


def _weight_codes(
    model: Any, graph: _Graph, weight: str
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The ``DequantizeLinear`` that produces ``weight`` with its constant integers, scale and
    zero point (None where it has none), where one and only one node reads it; None otherwise."""
    dequantize = graph.producers.get(weight)
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return None
    if graph.uses[dequantize.output[0]] != 1:
        return None
    integers = graph.constant(dequantize.input[0])
    scale = graph.constant(dequantize.input[1])
    has_zero = len(dequantize.input) > 2 and dequantize.input[2] != ""
    zero = _constant_value(model, graph, dequantize.input[2]) if has_zero else None
    if integers is None or scale is None or (has_zero and zero is None):
        return None
    return dequantize, integers, scale, zero


def inline_aliases(model: Any) -> None:
    """Read initializers directly instead of through ``Identity`` nodes (in place)."""
    graph = _Graph(model.graph)
    if not graph.aliases:
        return
    outputs = {output.name for output in model.graph.output}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in graph.aliases:
                node.input[index] = graph.aliases[name]
    for node in list(model.graph.node):
        alias = node.op_type == "Identity" and node.output[0] in graph.aliases
        if alias and node.output[0] not in outputs:
            model.graph.node.remove(node)


def _channel_bias(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A per-output-channel bias from an Add constant of shape (1, C, 1, 1) or (C, 1, 1)."""
    if value is None or value.size != channels:
        return None
    if value.shape in ((1, channels, 1, 1), (channels, 1, 1)):
        return value.reshape(-1).astype(np.float32)
    return None


def fold_bias_adds(model: Any) -> int:
    """Move ``Conv → Add(per-channel constant)`` into the conv's bias input (in place)."""
    moved = 0
    graph = _Graph(model.graph)
    for add in [node for node in model.graph.node if node.op_type == "Add"]:
        conv = graph.producers.get(add.input[0])
        constant_input = add.input[1]
        if conv is None or conv.op_type != "Conv":
            conv, constant_input = graph.producers.get(add.input[1]), add.input[0]
        if conv is None or conv.op_type != "Conv" or graph.uses[conv.output[0]] != 1:
            continue
        weight = graph.producers.get(conv.input[1])
        channels = _weight_channels(model, graph, conv, weight)
        bias = _channel_bias(_constant_value(model, graph, constant_input), channels or -1)
        if bias is None:
            continue
        if len(conv.input) > 2 and conv.input[2]:
            old = graph.constant(conv.input[2])
            if old is None:
                continue
            bias = (old.astype(np.float32) + bias).astype(np.float32)
        name = graph.add_initializer(f"{conv.name or conv.output[0]}.bias", bias)
        if len(conv.input) > 2:
            conv.input[2] = name
        else:
            conv.input.append(name)
        # the add's output is read by the same nodes as before; no other add reads this conv
        conv.output[0] = add.output[0]
        model.graph.node.remove(add)
        moved += 1
    return moved


def _weight_channels(model: Any, graph: _Graph, conv: Any, weight: Any) -> int | None:
    source = weight.input[0] if weight is not None else conv.input[1]
    value = _constant_value(model, graph, source)
    return None if value is None else int(value.shape[0])


def _widen_to_channels(model: Any, graph: _Graph, norm: Any) -> None:
    """Give a per-tensor weight DequantizeLinear per-channel scales and zero points, and negate
    the integers of channels whose BN factor is negative, so that the BN folds exactly
    (in place; nothing changes where that is impossible)."""
    conv = graph.producers.get(norm.input[0])
    if conv is None or conv.op_type != "Conv" or graph.uses[conv.output[0]] != 1:
        return
    read = _weight_codes(model, graph, conv.input[1])
    if read is None:
        return
    dequantize, integers, scale, zero = read
    gamma, beta, mean, var = (graph.constant(name) for name in norm.input[1:5])
    has_bias = len(conv.input) > 2 and conv.input[2] != ""
    bias = graph.constant(conv.input[2]) if has_bias else None
    if gamma is None or var is None or mean is None:
        return
    if (has_bias and bias is None) or beta is None:
        return
    channels = integers.shape[0]
    per_tensor = scale.ndim == 0 or _attribute(dequantize, "axis", 1) != 0
    if per_tensor and scale.size != 1:
        return
    epsilon = float(_attribute(norm, "epsilon", 1e-5))
    factor = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + epsilon)
    if factor.shape != (channels,) or np.any(factor == 0) or not np.all(np.isfinite(factor)):
        return
    flip = factor < 0
    if not per_tensor and not flip.any():
        return
    zero = np.zeros((), dtype=integers.dtype) if zero is None else zero
    info = np.iinfo(integers.dtype)
    view = (-1,) + (1,) * (integers.ndim - 1)
    values = np.where(flip.reshape(view), -integers.astype(np.int64), integers.astype(np.int64))
    zeros = np.broadcast_to(zero.astype(np.int64), (channels,))
    zeros = np.where(flip, -zeros, zeros)
    if min(values.min(), zeros.min()) < info.min or max(values.max(), zeros.max()) > info.max:
        return
    from onnx import helper

    base = dequantize.input[0]
    inputs = [
        graph.add_initializer(f"{base}.widened", values.astype(integers.dtype)),
        graph.add_initializer(
            f"{base}.channel_scale", np.broadcast_to(scale.astype(np.float32), (channels,)).copy()
        ),
        graph.add_initializer(f"{base}.channel_zero_point", zeros.astype(integers.dtype)),
    ]
    del dequantize.input[:]
    dequantize.input.extend(inputs)
    for attribute in [a for a in dequantize.attribute if a.name == "axis"]:
        dequantize.attribute.remove(attribute)
    dequantize.attribute.append(helper.make_attribute("axis", 0))
    if not flip.any():
        return

    # The conv's output is negated on the flipped channels: negate γ, μ and the conv bias
    # there too, so that the BN computes what it computed and its factor γ/σ turns positive.
    def negated(name: str, value: np.ndarray) -> str:
        return graph.add_initializer(f"{name}.flipped", np.where(flip, -value, value))

    norm.input[1] = negated(norm.input[1], gamma)
    norm.input[3] = negated(norm.input[3], mean)
    if has_bias:
        assert bias is not None
        conv.input[2] = negated(conv.input[2], bias)


def fold_batch_norms_widened(model: Any) -> tuple[int, int]:
    """Fold every BN that follows a conv with a DequantizeLinear weight (in place).

    Beyond :func:`supernet.deployment.onnx_graph.fold_batch_norms`, a per-tensor weight gets
    per-channel
    scales (the same value in each) and a channel whose factor ``γ/σ`` is negative gets its
    integers and zero point negated (exact while they stay in their storage type: an int8
    grid is wider than the grids of up to 7 bits it stores). Returns ``(folded, kept)``.
    """
    norms = [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    folded = 0
    # each fold reads and renames only its own conv's tensors: one index serves them all
    graph = _Graph(model.graph)
    for norm in norms:
        _widen_to_channels(model, graph, norm)
        if _fold_one(graph, norm):
            folded += 1
    prune_unused(model)
    return folded, len(norms) - folded


def unsigned_activations(model: Any) -> int:
    """Store every int8 activation grid as uint8, its codes and zero point shifted by 128.

    ``(q − z)·s = ((q + 128) − (z + 128))·s`` and the int8 range maps onto the uint8 range,
    so each QuantizeLinear/DequantizeLinear pair computes what it computed. Integer kernels
    need one activation type in and out (ONNX Runtime's QLinearConv does not take int8 in and
    uint8 out), and unsigned activations with signed weights are the fast pair on x86. Each
    rewritten QuantizeLinear gets its own zero point (the exporter shares equal constants).
    Returns the number of grids changed (in place).
    """
    graph = _Graph(model.graph)
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    changed = 0
    for quantize in [node for node in model.graph.node if node.op_type == "QuantizeLinear"]:
        if len(quantize.input) < 3 or graph.constant(quantize.input[0]) is not None:
            continue
        zero = _constant_value(model, graph, quantize.input[2])
        dequantizers = readers.get(quantize.output[0], [])
        if zero is None or zero.dtype != np.int8 or zero.size != 1 or not dequantizers:
            continue
        if any(
            node.op_type != "DequantizeLinear"
            or len(node.input) < 3
            or node.input[1] != quantize.input[1]
            or not _equal(_constant_value(model, graph, node.input[2]), zero)
            for node in dequantizers
        ):
            continue
        shifted = (zero.astype(np.int16) + 128).astype(np.uint8)
        name = graph.add_initializer(f"{quantize.name}/zero_point_uint8", shifted)
        quantize.input[2] = name
        for node in dequantizers:
            node.input[2] = name
        changed += 1
    prune_unused(model)
    return changed


def _equal(value: np.ndarray | None, expected: np.ndarray) -> bool:
    return value is not None and np.array_equal(value, expected)


def _interval(model: Any, graph: _Graph, node: Any) -> tuple[float, float] | None:
    """The range a Relu or Clip clamps to (None: bounds that are not constants)."""
    if node.op_type == "Relu":
        return 0.0, float("inf")
    bounds = [-float("inf"), float("inf")]
    if len(node.input) == 1:  # Clip before opset 11: bounds as attributes
        bounds = [
            float(_attribute(node, "min", bounds[0])),
            float(_attribute(node, "max", bounds[1])),
        ]
    for index in (1, 2):
        if len(node.input) > index and node.input[index]:
            value = _constant_value(model, graph, node.input[index])
            if value is None or value.size != 1:
                return None
            bounds[index - 1] = float(value.reshape(()))
    return bounds[0], bounds[1]


def _quantized(value: float, scale: np.float32, zero: int, low: int, high: int) -> int:
    """QuantizeLinear of one float (round half to even, saturated), as the runtimes do."""
    if value == float("inf"):
        return high
    if value == -float("inf"):
        return low
    code = float(np.rint(np.float32(value) / scale)) + zero
    return int(min(max(code, low), high))


def requantize(model: Any) -> tuple[int, int]:
    """Move clamps behind the QuantizeLinear that follows them, as integer ``Clip`` nodes.

    ``X → Relu/Clip… → QuantizeLinear`` becomes ``X → QuantizeLinear → Clip(q_low, q_high)``
    with ``q_low``/``q_high`` the codes of the clamps' bounds. Quantization is monotone, so
    ``Q(clamp(x, L, H)) = clamp(Q(x), Q(L), Q(H))`` for every ``x``: the graph computes the
    same codes. A b-bit grid stored in int8/uint8 keeps its range in that integer ``Clip``;
    where the clamps reach the storage's ends it is left out. Where ``X`` is a conv or a
    matmul, the runtime then sees ``DequantizeLinear → Conv → QuantizeLinear`` and can run
    one integer kernel. Returns ``(requantized, integer clips)``.
    """
    from onnx import helper

    requantized = clips = 0
    # chains are disjoint (each clamp has one reader), and a rewrite renames only the codes
    # of its own QuantizeLinear: one index serves every chain
    graph = _Graph(model.graph)
    inserted: list[tuple[str, Any]] = []
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for quantize in [node for node in model.graph.node if node.op_type == "QuantizeLinear"]:
        if graph.constant(quantize.input[0]) is not None:
            continue  # a weight
        chain: list[Any] = []
        source = quantize.input[0]
        low, high = -float("inf"), float("inf")
        while True:
            producer = graph.producers.get(source)
            if producer is None or producer.op_type not in CLAMPS or graph.uses[source] != 1:
                break
            interval = _interval(model, graph, producer)
            if interval is None:
                break
            low, high = max(low, interval[0]), min(high, interval[1])
            chain.append(producer)
            source = producer.input[0]
        scale = graph.constant(quantize.input[1])
        zero_value = (
            _constant_value(model, graph, quantize.input[2])
            if len(quantize.input) > 2 and quantize.input[2]
            else np.zeros((), np.uint8)
        )
        if not chain or low > high or scale is None or scale.size != 1 or zero_value is None:
            continue
        storage = {np.dtype(np.uint8): 2, np.dtype(np.int8): 3}.get(zero_value.dtype)
        if storage is None:
            continue
        dtype, storage_low, storage_high = _STORAGE[storage]
        zero = int(zero_value.reshape(()))
        step = np.float32(scale.reshape(()))
        code_low = _quantized(low, step, zero, storage_low, storage_high)
        code_high = _quantized(high, step, zero, storage_low, storage_high)
        for node in chain:
            model.graph.node.remove(node)
        quantize.input[0] = source
        requantized += 1
        if (code_low, code_high) == (storage_low, storage_high):
            continue
        codes = quantize.output[0]
        clipped = f"{codes}/clipped"
        for node in readers.get(codes, []):
            for index, name in enumerate(node.input):
                if name == codes:
                    node.input[index] = clipped
        bounds = [
            graph.add_initializer(f"{quantize.name}/clip_low", np.array(code_low, dtype)),
            graph.add_initializer(f"{quantize.name}/clip_high", np.array(code_high, dtype)),
        ]
        clip = helper.make_node(
            "Clip", [codes, *bounds], [clipped], name=f"{quantize.name}/IntegerClip"
        )
        inserted.append((codes, clip))
        clips += 1
    _insert_after(model, inserted)
    prune_unused(model)
    return requantized, clips


def _insert_after(model: Any, pairs: list[tuple[str, Any]]) -> None:
    """Put each new node right after the node that writes the tensor it is paired with (the
    graph stays topologically sorted)."""
    if not pairs:
        return
    after = dict(pairs)
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.output and node.output[0] in after:
            nodes.append(after[node.output[0]])
    copies = [type(node)() for node in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del model.graph.node[:]
    model.graph.node.extend(copies)


def dequantize_unfused_weights(
    model: Any, layer_of_node: Callable[[str], str | None]
) -> tuple[str, ...]:
    """Store float weights for convs and matmuls whose output no QuantizeLinear reads (in
    place).

    Such a layer cannot run as an integer kernel, and a DequantizeLinear of its weight would
    run at every inference; ``(q − z)·s`` computed once in float32 is what it computes.
    ``layer_of_node`` names the layer of a node (by the node's name). Returns the layers
    changed.
    """
    graph = _Graph(model.graph)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    changed: list[str] = []
    for node in list(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        readers = consumers.get(node.output[0], [])
        if len(readers) == 1 and readers[0].op_type == "QuantizeLinear":
            continue
        layer = layer_of_node(node.name)
        read = _weight_codes(model, graph, node.input[1])
        if read is None or layer is None:
            continue
        dequantize, integers, scale, zero = read
        view = [1] * integers.ndim
        if scale.size > 1:
            view[int(_attribute(dequantize, "axis", 1))] = -1
        offset = np.float32(0) if zero is None else zero.astype(np.float32).reshape(view)
        codes = integers.astype(np.float32)
        weight = ((codes - offset) * scale.astype(np.float32).reshape(view)).astype(np.float32)
        node.input[1] = graph.add_initializer(f"{layer}{DEQUANTIZED_SUFFIX}", weight)
        changed.append(layer)
    prune_unused(model)
    return tuple(changed)


def make_fusable(
    model: Any,
    layer_of_node: Callable[[str], str | None],
    *,
    float_fallback_weights: bool = True,
) -> FusableReport:
    """Rewrite an exported QDQ graph (in place) so that a runtime can fuse its layers.

    In order: Identity aliases of initializers are inlined, conv bias ``Add`` nodes move into
    the conv, BN layers fold into their conv (:func:`fold_batch_norms_widened`), int8
    activation grids become uint8 ones (:func:`unsigned_activations`), clamps move
    behind the quantization they feed (:func:`requantize`), and with
    ``float_fallback_weights`` a conv that still cannot fuse gets its weight dequantized once
    (:func:`dequantize_unfused_weights`). The graph computes what it computed, up to the
    float32 rounding of the folded BN (``y·f + (β − μ·f)`` for ``(y − μ)·f + β``).
    """
    inline_aliases(model)
    bias_adds = fold_bias_adds(model)
    folded, kept = fold_batch_norms_widened(model)
    unsigned_activations(model)
    requantized, clips = requantize(model)
    floats = dequantize_unfused_weights(model, layer_of_node) if float_fallback_weights else ()
    return FusableReport(folded, kept, bias_adds, requantized, clips, floats)
