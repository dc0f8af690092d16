"""Which layer of a subnet each node of its exported ONNX graph belongs to."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from supernet.deployment.runtimes.base import ExecNode, Profile


def module_path(node_name: str) -> str:
    """The module path in a TorchScript-exported node name (``/stage1/block1/expand/Conv`` →
    ``stage1.block1.expand``; ``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``)."""
    parts = [part for part in node_name.split("/") if part][:-1]
    path = ""
    for part in parts:
        # a part that repeats the path so far names a child by its full path
        nested = bool(path) and part.startswith(path + ".")
        path = part if nested or not path else f"{path}.{part}"
    return path


def layer_of_scope(node_name: str, layers: Collection[str]) -> str | None:
    """The layer whose module contains the node (its longest enclosing layer path)."""
    path = module_path(node_name)
    while path:
        if path in layers:
            return path
        path = path.rpartition(".")[0]
    return None


def attribute_nodes(model: Any, layers: Collection[str]) -> dict[str, str]:
    """Node name → layer for every node of an exported graph.

    A node inside a layer's module (its input quantizer, weight, conv) belongs to it; any
    other node (BN, activation, residual add, pooling) to the layer whose output reaches it
    last in graph order, and a node before every layer to the first layer.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    owner: dict[str, str] = {}
    order = {node.name: index for index, node in enumerate(model.graph.node)}
    pending: list[Any] = []
    for node in model.graph.node:
        layer = layer_of_scope(node.name, layers)
        if layer is None:
            layer = _upstream(node, producers, owner, order)
        if layer is None:
            pending.append(node)
        else:
            owner[node.name] = layer
    first = next(iter(_in_order(owner, order)), None)
    for node in pending:
        if first is not None:
            owner[node.name] = first
    return owner


def _upstream(
    node: Any, producers: dict[str, Any], owner: dict[str, str], order: dict[str, int]
) -> str | None:
    latest: tuple[int, str] | None = None
    for name in node.input:
        producer = producers.get(name)
        if producer is None or producer.name not in owner:
            continue
        candidate = (order[producer.name], owner[producer.name])
        if latest is None or candidate[0] > latest[0]:
            latest = candidate
    return None if latest is None else latest[1]


def _in_order(owner: dict[str, str], order: dict[str, int]) -> Iterable[str]:
    for name in sorted(owner, key=order.__getitem__):
        yield owner[name]


MAIN_OPS = ("Conv", "Gemm", "MatMul")
QUANTIZE_OPS = ("QuantizeLinear",)


class LayerOwners:
    """Names of an exported graph (its nodes and tensors) → the layer each belongs to."""

    def __init__(self, model: Any, layers: Collection[str]) -> None:
        self.layers = tuple(layers)
        self.node_owner = attribute_nodes(model, self.layers)
        self.node_op = {node.name: node.op_type for node in model.graph.node}
        self.tensor_node = {
            output: node.name for node in model.graph.node for output in node.output
        }
        for tensor in model.graph.initializer:
            layer = layer_of_scope("/" + tensor.name.replace(".", "/") + "/x", self.layers)
            if layer is not None and tensor.name not in self.tensor_node:
                self.node_owner.setdefault(tensor.name, layer)
                self.tensor_node[tensor.name] = tensor.name

    def _original(self, name: str) -> str | None:
        """The original node a runtime's name stands for: the name itself, the producer of a
        tensor so named, or either with suffixes the runtime appended cut off (``…_token_12``,
        ``…_nchwc``, ``…/WithoutBiases``)."""
        candidate = name
        while candidate:
            if candidate in self.node_owner:
                return candidate
            if candidate in self.tensor_node:
                return self.tensor_node[candidate]
            cut = max(candidate.rfind("/"), candidate.rfind("_"))
            if cut <= 0:
                return None
            candidate = candidate[:cut]
        return None

    def resolve(self, name: str, ops: Collection[str] | None = None) -> str | None:
        """The layer of a name a runtime gave a node (None: unknown, or the original node is
        not one of ``ops``)."""
        original = self._original(name)
        if original is not None:
            if ops is not None and self.node_op.get(original) not in ops:
                return None
            return self.node_owner.get(original)
        return layer_of_scope(name, self.layers) if ops is None else None


def _first(names: Iterable[str], owners: LayerOwners, ops: Collection[str] | None) -> str | None:
    for name in names:
        found = owners.resolve(name, ops)
        if found is not None:
            return found
    return None


def assign_layers(nodes: Sequence[ExecNode], owners: LayerOwners) -> list[str | None]:
    """The layer of each executed node.

    A conv or matmul belongs to the layer of the original conv or matmul it runs, or, where
    the runtime renamed it (OpenVINO names a conv with a folded BN after the multiply), to
    the layer whose input quantization feeds it. Other nodes belong to the layer of their
    names; a node without a known name to the layer of the node feeding it (a reorder after
    a conv), else of the node it feeds (a reorder before one).
    """
    index = {node.name: i for i, node in enumerate(nodes)}
    layers: list[str | None] = [
        _first(node.names, owners, MAIN_OPS) if node.main else None for node in nodes
    ]
    for i, node in enumerate(nodes):
        if node.main and layers[i] is None and node.inputs:
            feeder = index.get(node.inputs[0])
            if feeder is not None:
                layers[i] = _first(nodes[feeder].names, owners, QUANTIZE_OPS)
    for i, node in enumerate(nodes):
        if layers[i] is None:
            layers[i] = _first(node.names, owners, None)
    for _ in range(len(nodes)):
        changed = False
        for i, node in enumerate(nodes):
            if layers[i] is not None:
                continue
            fed = [layers[index[name]] for name in node.inputs if name in index]
            fed = [layer for layer in fed if layer is not None]
            if fed:
                layers[i] = fed[-1]
                changed = True
        if not changed:
            break
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            readers.setdefault(name, []).append(i)
    for i in reversed(range(len(nodes))):
        if layers[i] is None:
            reads = [layers[j] for j in readers.get(nodes[i].name, []) if layers[j] is not None]
            layers[i] = reads[0] if reads else None
    return layers


@dataclass(frozen=True)
class LayerProfile:
    """A profile summed per layer.

    Attributes:
        layers: the exported graph's layers.
        times_us: ``(runs, layers)`` µs of each layer's nodes in each profiled run.
        kernels: per layer, the kernel of its conv or matmul and whether it is an integer one
            (``("-", False)`` where none was found).
        unassigned_us: per run, µs of nodes no layer was found for.
    """

    layers: tuple[str, ...]
    times_us: npt.NDArray[np.float64]
    kernels: dict[str, tuple[str, bool]]
    unassigned_us: npt.NDArray[np.float64]

    @property
    def median_us(self) -> dict[str, float]:
        """Each layer's median µs over the runs."""
        medians = np.median(self.times_us, axis=0) if len(self.times_us) else None
        return {
            layer: 0.0 if medians is None else float(medians[i])
            for i, layer in enumerate(self.layers)
        }


def layer_profile(profile: Profile, owners: LayerOwners) -> LayerProfile:
    """Sum a runtime profile's node times per layer of the exported graph."""
    assigned = assign_layers(profile.nodes, owners)
    column = {layer: i for i, layer in enumerate(owners.layers)}
    runs = profile.times.shape[0]
    times = np.zeros((runs, len(owners.layers)), dtype=np.float64)
    unassigned = np.zeros(runs, dtype=np.float64)
    best: dict[str, tuple[float, ExecNode]] = {}
    medians = np.median(profile.times, axis=0) if runs else np.zeros(len(profile.nodes))
    for i, (node, layer) in enumerate(zip(profile.nodes, assigned, strict=True)):
        if layer is None or layer not in column:
            unassigned += profile.times[:, i]
            continue
        times[:, column[layer]] += profile.times[:, i]
        if node.main and (layer not in best or medians[i] > best[layer][0]):
            best[layer] = (float(medians[i]), node)
    kernels = {
        layer: (best[layer][1].kernel, best[layer][1].integer) if layer in best else ("-", False)
        for layer in owners.layers
    }
    return LayerProfile(owners.layers, times, kernels, unassigned)
