"""The runtime registry's contract: every registered runtime loads as itself (or says it is
not installed) and runs an ONNX model on its input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from supernet.deployment.runtimes import RUNTIMES, Runtime, get_runtime, runtime_available


def _relu_model() -> bytes:
    shape = [1, 2, 3]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_the_registered_runtimes() -> None:
    assert tuple(RUNTIMES) == ("onnxruntime", "openvino")
    with pytest.raises(
        ValueError, match=r"^runtime must be one of onnxruntime, openvino; got 'tvm'"
    ):
        get_runtime("tvm")
    assert not runtime_available("tvm")


@pytest.mark.parametrize("name", tuple(RUNTIMES))
def test_each_runtime_loads_as_itself_and_runs_a_model(name: str) -> None:
    if not runtime_available(name):
        with pytest.raises(ValueError, match=rf"runtime '{name}' is not installed here"):
            get_runtime(name)
        return
    runtime = get_runtime(name)
    assert isinstance(runtime, Runtime) and runtime.name == name
    assert isinstance(runtime.float_fallback_weights, bool)
    inputs = np.array([[[-1.0, 0.5, 2.0], [3.0, -0.25, 0.0]]], dtype=np.float32)
    onnx.checker.check_model(onnx.load_from_string(_relu_model()))
    session = runtime.open(_relu_model(), inputs, threads=1, profiling=False)
    try:
        session.run()
        np.testing.assert_array_equal(session.outputs(), np.maximum(inputs, 0.0))
    finally:
        session.close()
