"""What an exported ONNX file says about itself: ``metadata_props`` (bits, form, source, ...)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import file_sha256
from eqsearch.space import ElasticSpace, SubnetConfig

PREFIX = "eqsearch."
"""Every key eqsearch writes starts with it (other tools' keys are left alone)."""

VERSION = PREFIX + "version"
CONFIG = PREFIX + "config"
BITS = PREFIX + "bits_per_layer"
FORM = PREFIX + "form"
ARCHITECTURE = PREFIX + "architecture"
MODEL = PREFIX + "model"
DATASET = PREFIX + "dataset"
NORMALIZATION = PREFIX + "normalization"
SOURCE = PREFIX + "source"
SOURCE_SHA256 = PREFIX + "source_sha256"

JSON_KEYS = frozenset({CONFIG, BITS, ARCHITECTURE, NORMALIZATION})
"""Keys whose values are JSON text (the others are plain strings)."""

MIXED_FORMS = "per_layer"
"""The form recorded when the layers' forms differ (each layer's is in the bits entry)."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def subnet_metadata(space: ElasticSpace, config: SubnetConfig) -> dict[str, str]:
    """The props of a subnet: its config, bits and form per running layer, its architecture
    (joint spaces only) and the eqsearch version.

    ``bits_per_layer`` lists ``{"layer", "w_bits", "a_bits", "form"}`` for each running
    layer in network order; 32 bits means the layer stays in full precision.
    """
    from eqsearch import __version__

    validated = space.validate(config)
    running = space.active_layers(validated)
    bits = [
        {"layer": space.layers[index].name, **choice.to_dict()}
        for index, choice in zip(running, validated.choices, strict=True)
    ]
    form = validated.uniform_form
    props = {
        VERSION: __version__,
        CONFIG: _json(validated.to_dict()),
        BITS: _json(bits),
        FORM: str(form) if form is not None else MIXED_FORMS,
    }
    if space.is_joint:
        props[ARCHITECTURE] = _json(validated.arch_dict)
    return props


def source_metadata(
    checkpoint: Mapping[str, Any],
    path: str | Path | None = None,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> dict[str, str]:
    """The props of where a subnet came from: the model, dataset and input normalisation of
    the checkpoint, and its file name and SHA-256 (``path``; the name only, never a
    directory of this machine)."""
    props: dict[str, str] = {}
    model = (checkpoint.get("build_info") or {}).get("model")
    if isinstance(model, str):
        props[MODEL] = model
    dataset = (checkpoint.get("data") or {}).get("name")
    if isinstance(dataset, str):
        props[DATASET] = dataset
    if normalization is not None:
        mean, std = normalization
        props[NORMALIZATION] = _json(
            {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
        )
    if path is not None:
        props[SOURCE] = Path(path).name
        props[SOURCE_SHA256] = file_sha256(path)
    return props


def set_metadata(model: Any, props: Mapping[str, str]) -> None:
    """Write ``props`` into an ``onnx.ModelProto``'s ``metadata_props`` (replacing entries of
    the same keys, keeping the others)."""
    kept = [(entry.key, entry.value) for entry in model.metadata_props if entry.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *sorted(props.items())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def _load(location: Path) -> Any:
    import onnx

    if not location.is_file():
        raise InputError(f"ONNX file not found: {location}")
    try:
        model = onnx.load(str(location), load_external_data=False)
    except Exception as error:  # protobuf raises several types for a file that is no model
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{location} is not an ONNX model ({first[:160]})") from None
    if model.ir_version == 0 or not model.graph.node:
        # protobuf parses some arbitrary bytes as an empty message
        raise InputError(f"{location} is not an ONNX model (no IR version or no graph)")
    return model


def _parsed(model: Any) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for entry in model.metadata_props:
        value: Any = entry.value
        if entry.key in JSON_KEYS:
            with contextlib.suppress(json.JSONDecodeError):  # else shown as written
                value = json.loads(entry.value)
        props[entry.key] = value
    return props


def _shape(value: Any) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [dim.dim_value if dim.HasField("dim_value") else dim.dim_param for dim in dims]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file, JSON values parsed (``bits_per_layer``, ...).

    Raises:
        InputError: the file is missing or not an ONNX model.
    """
    return _parsed(_load(Path(path)))


def describe_onnx(path: str | Path) -> dict[str, Any]:
    """An ONNX file in brief: opsets, inputs and outputs with their shapes, node counts
    (QuantizeLinear / DequantizeLinear among them) and the parsed ``metadata`` props.

    Raises:
        InputError: the file is missing or not an ONNX model.
    """
    model = _load(Path(path))
    ops = [node.op_type for node in model.graph.node]
    return {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "inputs": {value.name: _shape(value) for value in model.graph.input},
        "outputs": {value.name: _shape(value) for value in model.graph.output},
        "nodes": len(ops),
        "quantize_nodes": ops.count("QuantizeLinear"),
        "dequantize_nodes": ops.count("DequantizeLinear"),
        "metadata": _parsed(model),
    }
