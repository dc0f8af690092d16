"""ONNX Runtime (CPU): sessions and per-node profiles with the kernel of every node."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from supernet.deployment.runtimes.base import ExecNode, Profile, Runtime, RuntimeSession

INTEGER_PREFIXES = ("QLinear", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantize")
MAIN_OPS = {
    "Conv",
    "FusedConv",
    "NhwcConv",
    "NhwcFusedConv",
    "QLinearConv",
    "ConvInteger",
    "Gemm",
    "FusedGemm",
    "QGemm",
    "MatMul",
    "FusedMatMul",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
}


def is_integer_op(op_type: str) -> bool:
    """Whether an ONNX Runtime operator computes in integers."""
    return op_type.startswith(INTEGER_PREFIXES) or op_type == "MatMulIntegerToFloat"


class OnnxRuntimeSession(RuntimeSession):
    """An ``onnxruntime.InferenceSession`` with its optimized graph at hand."""

    def __init__(
        self, model: bytes, inputs: npt.NDArray[np.float32], threads: int, profiling: bool
    ) -> None:
        import onnx
        import onnxruntime

        self._directory = tempfile.TemporaryDirectory(prefix="eqsearch-ort-")
        folder = Path(self._directory.name)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # spinning worker threads take the cores other work waits for on a shared machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._nodes: tuple[ExecNode, ...] = ()
        if profiling:
            options.enable_profiling = True
            options.profile_file_prefix = str(folder / "profile")
            options.optimized_model_filepath = str(folder / "optimized.onnx")
        self._session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        if profiling:
            self._nodes = _exec_nodes(onnx.load(str(folder / "optimized.onnx")))
        self._feed = {self._session.get_inputs()[0].name: inputs}
        self._runs = 0
        self._recording = False
        self._recorded: list[int] = []

    def run(self, *, record: bool = True) -> None:
        self._session.run(None, self._feed)
        if self._recording and record:
            self._recorded.append(self._runs)
        self._runs += 1

    def outputs(self) -> npt.NDArray[np.float32]:
        self._runs += 1
        result: npt.NDArray[np.float32] = self._session.run(None, self._feed)[0]
        return result

    def record(self) -> None:
        self._recording = True

    def profile(self) -> Profile:
        events = json.loads(Path(self._session.end_profiling()).read_text())
        return Profile(self._nodes, _node_times(events, self._nodes, self._recorded))

    def close(self) -> None:
        del self._session
        self._directory.cleanup()


def _exec_nodes(model: Any) -> tuple[ExecNode, ...]:
    producers = {out: node.name for node in model.graph.node for out in node.output}
    nodes = []
    for node in model.graph.node:
        nodes.append(
            ExecNode(
                name=node.name,
                op_type=node.op_type,
                kernel=node.op_type,
                integer=is_integer_op(node.op_type),
                main=node.op_type in MAIN_OPS,
                names=(node.name, *node.output),
                inputs=tuple(producers[name] for name in node.input if name in producers),
            )
        )
    return tuple(nodes)


def _node_times(
    events: list[dict[str, Any]], nodes: tuple[ExecNode, ...], recorded: list[int]
) -> npt.NDArray[np.float64]:
    every = sorted(
        (event["ts"], event["ts"] + event["dur"])
        for event in events
        if event.get("cat") == "Session" and event.get("name") == "model_run"
    )
    runs = [every[index] for index in recorded if index < len(every)]
    column = {node.name: index for index, node in enumerate(nodes)}
    times = np.zeros((len(runs), len(nodes)), dtype=np.float64)
    starts = np.array([start for start, _ in runs], dtype=np.float64)
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        index = column.get(name[: -len("_kernel_time")])
        if index is None or not len(starts):
            continue
        run = int(np.searchsorted(starts, event["ts"], side="right")) - 1
        if 0 <= run < len(runs) and event["ts"] <= runs[run][1]:
            times[run, index] += float(event["dur"])
    return times


class OnnxRuntime(Runtime):
    """ONNX Runtime's CPU execution provider, default graph optimizations (as deployed)."""

    name = "onnxruntime"
    float_fallback_weights = True
    session = OnnxRuntimeSession
