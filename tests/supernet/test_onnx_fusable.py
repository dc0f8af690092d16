"""Runtime-aware export: the rewritten graph computes what the plain export computes, and fuses."""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.deployment.onnx_fusable import (
    fold_batch_norms_widened,
    requantize,
    unsigned_activations,
)
from supernet.deployment.onnx_graph import INT4_OPSET, store_int4_weights
from supernet.deployment.runtimes import get_runtime
from supernet.deployment.runtimes.exporting import runtime_graph
from supernet.networks.calibrate import calibrate_bn
from supernet.networks.elastic import Supernet

NO_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
ALL_OPTIMIZATIONS = ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _run(model: bytes, images: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@cache
def _tiny() -> tuple[Supernet, torch.Tensor]:
    torch.manual_seed(0)
    supernet = build_supernet("tiny_convnet", num_classes=10, in_channels=1, image_size=8)
    images = torch.randn(64, 1, 8, 8)
    init_quantizers(supernet, images)
    calibrate_bn(supernet, images)
    return supernet.eval(), images


@pytest.mark.parametrize("form", ["channel-sym-sym", "tensor-asym-sym", "channel-asym-asym"])
@pytest.mark.parametrize("bits", [(3, 4), (8, 8), (5, 2)])
def test_the_rewritten_graph_computes_what_the_plain_export_computes(
    form: str, bits: tuple[int, int]
) -> None:
    supernet, images = _tiny()
    config = supernet.space.uniform(*bits, QuantForm.parse(form))
    with supernet.using(config):
        calibrate_bn(supernet, images)
        reference = supernet(images).detach().numpy()
    assert reference.std() > 0.05  # logits that tell the images apart
    plain = runtime_graph(supernet, config, None)
    fused = runtime_graph(supernet, config, get_runtime("onnxruntime"))
    assert fused.fusable is not None and fused.fusable.requantized >= 2
    x = images.numpy()
    literal = _run(plain.model, x, NO_OPTIMIZATION)
    np.testing.assert_allclose(literal, reference, atol=1e-5)
    # executed literally, the rewritten graph gives the same codes, so the same logits up to
    # float32 rounding of the folded BN (which a code can only cross at a rounding tie)
    np.testing.assert_allclose(_run(fused.model, x, NO_OPTIMIZATION), literal, atol=2e-2)
    kinds = [node.op_type for node in onnx.load_from_string(fused.model).graph.node]
    plain_kinds = [node.op_type for node in onnx.load_from_string(plain.model).graph.node]
    assert "BatchNormalization" not in kinds
    # the ReLUs before a quantized layer became integer bounds; the last one feeds pooling
    assert kinds.count("Relu") == 1 < plain_kinds.count("Relu")
    narrow = bits[1] < 8
    clips = [
        node
        for node in onnx.load_from_string(fused.model).graph.node
        if node.name.endswith("/IntegerClip")
    ]
    assert bool(clips) == narrow


def test_widened_int8_storage_equals_int4_storage_in_outputs() -> None:
    """A 3-bit weight grid stored as int8 (what fuses) computes what INT4 storage computes."""
    supernet, images = _tiny()
    config = supernet.space.uniform(3, 8, QuantForm.parse("channel-sym-sym"))
    plain = runtime_graph(supernet, config, None)
    int4 = onnx.version_converter.convert_version(onnx.load_from_string(plain.model), INT4_OPSET)
    del int4.graph.value_info[:]
    three_bit = {layer.name for layer in supernet.space.layers if layer.pinned is None}
    assert store_int4_weights(int4, three_bit) == len(three_bit) == 2
    x = images.numpy()
    widened = runtime_graph(supernet, config, get_runtime("onnxruntime"))
    a = _run(int4.SerializeToString(), x, NO_OPTIMIZATION)
    b = _run(widened.model, x, NO_OPTIMIZATION)
    np.testing.assert_allclose(a, b, atol=2e-2)
    assert (a.argmax(1) == b.argmax(1)).mean() == 1.0


def _graph(nodes, inits, shape):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", T.FLOAT, shape)],
        [helper.make_tensor_value_info("y", T.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_clamps_move_behind_quantization_as_integer_clips_exactly() -> None:
    """Relu → Clip(−0.3, 0.45) → Q(int8) → DQ equals Q → Clip(codes) → DQ on every input,
    rounding ties included; the int8 grid becomes a uint8 one with the same values."""
    scale, zero = np.float32(0.05), np.int8(-3)
    inits = [
        numpy_helper.from_array(np.array(-0.3, np.float32), "low"),
        numpy_helper.from_array(np.array(0.45, np.float32), "high"),
        numpy_helper.from_array(np.array(scale), "s"),
        numpy_helper.from_array(np.array(zero), "z"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="/a/Relu"),
        helper.make_node("Clip", ["r", "low", "high"], ["c"], name="/b/input_quantizer/Clip"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="/b/input_quantizer/Q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="/b/input_quantizer/D"),
    ]
    model = _graph(nodes, inits, [4001])
    x = np.linspace(-1, 1, 4001, dtype=np.float32)
    x[::7] = (np.round(x[::7] / scale) + 0.5) * scale  # exact rounding ties
    before = _run(model.SerializeToString(), x, NO_OPTIMIZATION)
    assert unsigned_activations(model) == 1
    assert requantize(model) == (1, 1)
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["QuantizeLinear", "Clip", "DequantizeLinear"]
    clip = model.graph.node[1]
    bounds = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name in clip.input]
    assert {b.dtype for b in bounds} == {np.dtype(np.uint8)}
    # codes of 0 (the Relu) and 0.45 on the uint8 grid: zero point −3 + 128
    assert sorted(int(b) for b in bounds) == [125, 125 + 9]
    after = _run(model.SerializeToString(), x, NO_OPTIMIZATION)
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("per_tensor", [False, True])
def test_batch_norm_folds_into_widened_weights_with_negative_factors(per_tensor: bool) -> None:
    """A per-tensor weight grid gets per-channel scales and a channel with γ < 0 negated
    integers, so that the BN folds; the conv then computes what conv + BN computed."""
    rng = np.random.default_rng(0)
    channels = 4
    integers = rng.integers(-4, 4, (channels, 3, 3, 3)).astype(np.int8)  # a 3-bit grid
    scale = np.float32(0.1) if per_tensor else np.full(channels, 0.1, np.float32)
    zero = np.int8(0) if per_tensor else np.zeros(channels, np.int8)
    gamma = np.array([1.5, -0.5, 2.0, -1.0], np.float32)
    inits = [
        numpy_helper.from_array(integers, "/c.weight.integers"),
        numpy_helper.from_array(np.array(scale), "w_scale"),
        numpy_helper.from_array(np.array(zero), "w_zero"),
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.random(channels).astype(np.float32) + 0.5, "var"),
    ]
    weight_node = helper.make_node(
        "DequantizeLinear",
        ["/c.weight.integers", "w_scale", "w_zero"],
        ["w"],
        name="/c/weight/DequantizeLinear",
        **({} if per_tensor else {"axis": 0}),
    )
    nodes = [
        weight_node,
        helper.make_node("Conv", ["x", "w"], ["conv"], name="/c/Conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["y"], name="/bn/BN"
        ),
    ]
    model = _graph(nodes, inits, [1, 3, 6, 6])
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    before = _run(model.SerializeToString(), x, NO_OPTIMIZATION)
    assert fold_batch_norms_widened(model) == (1, 0)
    after = _run(model.SerializeToString(), x, NO_OPTIMIZATION)
    np.testing.assert_allclose(after, before, atol=1e-5)
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dequantize = model.graph.node[0]
    widened = stored[dequantize.input[0]]
    assert widened.dtype == np.int8
    np.testing.assert_array_equal(widened[[1, 3]], -integers[[1, 3]])
    np.testing.assert_array_equal(widened[[0, 2]], integers[[0, 2]])
    assert stored[dequantize.input[1]].shape == (channels,)
    assert np.all(stored[dequantize.input[1]] > 0)


def test_onnx_runtime_fuses_the_rewritten_layers_into_integer_kernels() -> None:
    supernet, _ = _tiny()
    config = supernet.space.uniform(4, 4, QuantForm.parse("channel-sym-sym"))
    runtime = get_runtime("onnxruntime")
    fused = runtime_graph(supernet, config, runtime)
    plain = runtime_graph(supernet, config, None)
    from supernet.deployment.runtimes.attribution import layer_profile
    from supernet.deployment.runtimes.base import profile_runs
    from supernet.deployment.runtimes.exporting import random_images

    images = random_images(supernet, 8, 1)
    kernels = {}
    for name, graph in (("fused", fused), ("plain", plain)):
        session = runtime.open(graph.model, images, threads=1, profiling=True)
        kernels[name] = layer_profile(profile_runs(session, 2), graph.owners).kernels
        session.close()
    # the first two convs feed quantized layers: one QLinearConv each; the plain export
    # runs every layer as DequantizeLinear + float conv
    first, second = list(fused.owners.layers)[:2]
    assert kernels["fused"][first] == ("QLinearConv", True)
    assert kernels["fused"][second] == ("QLinearConv", True)
    assert not any(integer for _, integer in kernels["plain"].values())


def test_export_for_a_runtime_reports_integer_layers_and_latency_next_to_fp32(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supernet.deployment.export import export_onnx

    monkeypatch.setenv("EQSEARCH_CACHE", str(tmp_path / "cache"))  # no stored probe
    supernet, images = _tiny()
    config = supernet.space.uniform(3, 4, QuantForm.parse("channel-sym-sym"))
    path = tmp_path / "model.onnx"
    report = export_onnx(
        supernet,
        config,
        path,
        verify_images=images,
        calibration_images=images,
        int4_weights=True,
        runtime="onnxruntime",
        threads=1,
    )
    measured = report.runtime
    assert measured is not None and measured.runtime == "onnxruntime"
    layers = list(supernet.elastic_layers())
    assert measured.integer_layers == tuple(layers[:2])
    assert measured.float_layers == tuple(layers[2:])
    assert measured.kernels[layers[0]] == "QLinearConv"
    assert measured.latency_ms > 0 and measured.fp32_latency_ms > 0
    # INT4 runs as DequantizeLinear + float conv: the 3-bit layers keep int8 storage
    assert report.int4_layers == 0 and report.widened_layers == 2
    assert report.folded_batch_norms == 3 and report.top1_agreement >= 95.0
    written = onnx.load(str(path))
    assert not any(t.data_type == T.INT4 for t in written.graph.initializer)
