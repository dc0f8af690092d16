"""OpenVINO (CPU plugin): compiled models and per-node profiles with each primitive's name."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from supernet.deployment.runtimes.base import ExecNode, Profile, Runtime, RuntimeSession

MAIN_OPS = {
    "Convolution",
    "GroupConvolution",
    "FullyConnected",
    "FullyConnectedQuantizedLegacy",
    "FullyConnectedQuantized",
    "MatMul",
    "Deconvolution",
}


def is_integer_kernel(exec_type: str) -> bool:
    """Whether an OpenVINO CPU primitive computes in integers (``…_I8``, ``…_U8``)."""
    return exec_type.upper().endswith(("_I8", "_U8", "_I32"))


class OpenVinoSession(RuntimeSession):
    """A model compiled for OpenVINO's CPU plugin, with one infer request."""

    def __init__(
        self, model: bytes, inputs: npt.NDArray[np.float32], threads: int, profiling: bool
    ) -> None:
        core = _core()
        with tempfile.TemporaryDirectory(prefix="eqsearch-ov-") as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(model)
            network = core.read_model(str(path))
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "ENABLE_CPU_PINNING": False,
            "PERF_COUNT": profiling,
        }
        self._compiled = core.compile_model(network, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._inputs = inputs
        self._nodes = _exec_nodes(self._compiled.get_runtime_model()) if profiling else ()
        self._column = {node.name: index for index, node in enumerate(self._nodes)}
        self._recording = False
        self._times: list[np.ndarray] = []

    def run(self, *, record: bool = True) -> None:
        self._request.infer({0: self._inputs})
        if self._recording and record:
            # the counters describe the request's last inference
            times = np.zeros(len(self._nodes), dtype=np.float64)
            for info in self._request.get_profiling_info():
                index = self._column.get(info.node_name)
                if index is not None:
                    times[index] += info.real_time.total_seconds() * 1e6
            self._times.append(times)

    def outputs(self) -> npt.NDArray[np.float32]:
        result = self._request.infer({0: self._inputs})
        return np.asarray(next(iter(result.values())), dtype=np.float32)

    def record(self) -> None:
        self._recording = True
        self._times = []

    def profile(self) -> Profile:
        times = np.array(self._times).reshape(len(self._times), len(self._nodes))
        return Profile(self._nodes, times)

    def close(self) -> None:
        del self._request
        del self._compiled


_CORE: list[Any] = []


def _core() -> Any:
    """One ``openvino.Core`` for the process (each would start its own thread pools)."""
    if not _CORE:
        import openvino

        _CORE.append(openvino.Core())
    return _CORE[0]


def _rt(op: Any, key: str) -> str:
    info = op.get_rt_info()
    if key not in info:
        return ""
    return str(info[key].astype(str))


def _exec_nodes(model: Any) -> tuple[ExecNode, ...]:
    nodes = []
    for op in model.get_ordered_ops():
        layer_type = _rt(op, "layerType")
        if layer_type in ("Input", "Output", "Const", "Parameter", "Result"):
            continue
        kernel = _rt(op, "primitiveType") or layer_type
        originals = tuple(name for name in _rt(op, "originalLayersNames").split(",") if name)
        feeders = tuple(
            value.get_source_output().get_node().get_friendly_name() for value in op.inputs()
        )
        nodes.append(
            ExecNode(
                name=op.get_friendly_name(),
                op_type=layer_type,
                kernel=kernel,
                integer=is_integer_kernel(kernel),
                main=layer_type in MAIN_OPS,
                names=(op.get_friendly_name(), *originals),
                inputs=feeders,
            )
        )
    return tuple(nodes)


class OpenVino(Runtime):
    """OpenVINO's CPU plugin (FP32 inference precision; integer where its low-precision
    transformations take a layer)."""

    name = "openvino"
    float_fallback_weights = False
    session = OpenVinoSession
