"""Integer weights of a fixed subnet packed at their bit width (.npz), and their exact unpacking."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_bytes, parse_json
from eqsearch.space import SubnetConfig
from supernet.deployment.deploy import LayerQuantization, quantize_layers
from supernet.networks.elastic import Supernet

FORMAT_NAME = "eqsearch-packed-weights"
FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class PackedLayer:
    """One layer read back from a packed file.

    Attributes:
        name: the layer's module path.
        w_bits, a_bits: its bit widths (32: full precision, then ``integers`` is None).
        form: the quantization form, e.g. ``channel-sym-asym``.
        shape: the weight's shape.
        bias: the float bias, if any.
        integers: the weight integers ``q`` (weight ``= (q − zero_point)·scale``).
        scale, zero_point: per output channel (``axis = 0``) or one each (``axis = None``).
        qmin, qmax: the weight grid.
        input_scale, input_zero_point, input_qmin, input_qmax: the input activation grid.
        float_weight: the weight of a full-precision layer (None when quantized); such a
            layer has none of the grid fields.
    """

    name: str
    w_bits: int
    a_bits: int
    form: str
    shape: tuple[int, ...]
    bias: np.ndarray | None
    integers: np.ndarray | None = None
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    axis: int | None = None
    qmin: int = 0
    qmax: int = 0
    input_scale: float = 1.0
    input_zero_point: int = 0
    input_qmin: int = 0
    input_qmax: int = 0
    float_weight: np.ndarray | None = None

    def dequantize(self) -> np.ndarray:
        """The float32 weight the subnet computes with."""
        if self.integers is None:
            assert self.float_weight is not None
            return self.float_weight
        assert self.scale is not None and self.zero_point is not None
        view = (-1,) + (1,) * (len(self.shape) - 1) if self.axis == 0 else ()
        shifted = (self.integers - self.zero_point.reshape(view)).astype(np.float32)
        return shifted * self.scale.reshape(view)


@dataclass(frozen=True)
class PackedReport:
    """What :func:`export_packed_weights` wrote.

    Attributes:
        path: the ``.npz`` file.
        layers: layers stored; quantized_layers: of which quantized.
        parameters: weights and biases stored.
        payload_bytes: bytes of the packed integer weights alone.
        file_bytes: the file's size on disk (integers, scales, zero points, biases, metadata).
        fp32_bytes: the same weights and biases in FP32.
    """

    path: Path
    layers: int
    quantized_layers: int
    parameters: int
    payload_bytes: int
    file_bytes: int
    fp32_bytes: int


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers ``< 2**bits`` into a little-endian bit stream of bytes."""
    if not 1 <= bits <= 16:
        raise InputError(f"bits must be in 1..16; got {bits}")
    flat = np.asarray(values).reshape(-1).astype(np.uint32)
    if flat.size and int(flat.max()) >= 1 << bits:
        raise InputError(f"values do not fit in {bits} bits")
    planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The ``count`` integers :func:`pack_bits` packed at ``bits`` bits (as int64)."""
    planes = np.unpackbits(
        np.asarray(packed, dtype=np.uint8), count=count * bits, bitorder="little"
    )
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    return planes.reshape(count, bits).astype(np.int64) @ weights


def _layer_arrays(layer: LayerQuantization) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    name, choice = layer.name, layer.choice
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "name": name,
        "w_bits": choice.w_bits,
        "a_bits": choice.a_bits,
        "form": str(choice.form),
        "shape": list(layer.float_weight.shape),
        "has_bias": layer.bias is not None,
    }
    if layer.bias is not None:
        arrays[f"{name}/bias"] = layer.bias.cpu().numpy().astype(np.float32)
    if layer.weight_integers is None:
        arrays[f"{name}/weight"] = layer.float_weight.cpu().numpy().astype(np.float32)
        return arrays, meta
    assert layer.weight_scale is not None and layer.weight_zero_point is not None
    integers = layer.weight_integers.cpu().numpy().astype(np.int64)
    arrays[f"{name}/packed"] = pack_bits(integers - layer.weight_qmin, choice.w_bits)
    arrays[f"{name}/scale"] = layer.weight_scale.cpu().numpy().astype(np.float32)
    arrays[f"{name}/zero_point"] = layer.weight_zero_point.cpu().numpy().astype(np.int8)
    meta.update(
        {
            "axis": layer.weight_axis,
            "qmin": layer.weight_qmin,
            "qmax": layer.weight_qmax,
            "input_scale": layer.input_scale,
            "input_zero_point": layer.input_zero_point,
            "input_qmin": layer.input_qmin,
            "input_qmax": layer.input_qmax,
        }
    )
    return arrays, meta


def export_packed_weights(
    supernet: Supernet, config: SubnetConfig, path: str | Path
) -> PackedReport:
    """Write the subnet's weights as integers packed at their bit width into an ``.npz`` file.

    Per quantized layer: ``{name}/packed`` (the integers minus the grid minimum, ``w_bits``
    bits each, little-endian bit stream), ``{name}/scale`` (float32), ``{name}/zero_point``
    (int8), ``{name}/bias`` (float32, if any); full-precision layers store ``{name}/weight`` in
    float32. A JSON entry ``__metadata__`` records bits, shapes, grids, axes and the input
    activation grids. The archive is not compressed, so its size is the real packed size.
    :func:`load_packed_weights` restores the integers exactly.

    Raises:
        ValueError: a config outside the space, a quantizer that cannot be exported, or a
            missing output directory; nothing is written then.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"the output directory {path.parent} does not exist")
    if path.suffix != ".npz":
        raise InputError(f"packed weights are written as .npz; got {path.name!r}")
    layers = quantize_layers(supernet, config)
    arrays: dict[str, np.ndarray] = {}
    metas = []
    payload = parameters = 0
    for layer in layers.values():
        layer_arrays, meta = _layer_arrays(layer)
        arrays.update(layer_arrays)
        metas.append(meta)
        parameters += layer.float_weight.numel() + (0 if layer.bias is None else layer.bias.numel())
        if layer.quantized:
            payload += arrays[f"{layer.name}/packed"].nbytes
    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "layers": metas,
    }
    arrays[METADATA_KEY] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())
    return PackedReport(
        path=path,
        layers=len(layers),
        quantized_layers=sum(layer.quantized for layer in layers.values()),
        parameters=parameters,
        payload_bytes=payload,
        file_bytes=path.stat().st_size,
        fp32_bytes=4 * parameters,
    )


def load_packed_weights(path: str | Path) -> dict[str, PackedLayer]:
    """Read a file of :func:`export_packed_weights`, unpacking the exact weight integers.

    Raises:
        ValueError: the file is not a packed-weights file of a known version.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is not a packed-weights .npz file ({error})") from None
    with archive:
        if METADATA_KEY not in archive:
            raise InputError(f"{path} has no {METADATA_KEY} entry; not a packed-weights file")
        metadata = parse_json(archive[METADATA_KEY].tobytes(), what=f"{path} metadata")
        expected = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
        if not isinstance(metadata, dict) or any(metadata.get(k) != v for k, v in expected.items()):
            raise InputError(
                f"{path}: not a packed-weights file of format {FORMAT_NAME} version "
                f"{FORMAT_VERSION}"
            )
        return {meta["name"]: _read_layer(archive, meta) for meta in metadata["layers"]}


def _read_layer(archive: Any, meta: dict[str, Any]) -> PackedLayer:
    name = meta["name"]
    shape = tuple(int(s) for s in meta["shape"])
    bias = archive[f"{name}/bias"] if meta["has_bias"] else None
    common = {
        "name": name,
        "w_bits": int(meta["w_bits"]),
        "a_bits": int(meta["a_bits"]),
        "form": meta["form"],
        "shape": shape,
        "bias": bias,
    }
    if f"{name}/packed" not in archive:
        return PackedLayer(**common, float_weight=archive[f"{name}/weight"])
    count = int(np.prod(shape))
    unsigned = unpack_bits(archive[f"{name}/packed"], int(meta["w_bits"]), count)
    integers = (unsigned + int(meta["qmin"])).reshape(shape)
    return PackedLayer(
        **common,
        integers=integers,
        scale=archive[f"{name}/scale"],
        zero_point=archive[f"{name}/zero_point"].astype(np.int64),
        axis=meta["axis"],
        qmin=int(meta["qmin"]),
        qmax=int(meta["qmax"]),
        input_scale=float(meta["input_scale"]),
        input_zero_point=int(meta["input_zero_point"]),
        input_qmin=int(meta["input_qmin"]),
        input_qmax=int(meta["input_qmax"]),
    )
