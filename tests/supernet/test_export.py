"""ONNX QDQ export checked in ONNX Runtime, packed integer weights, refused exports."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch.nn import functional as F

from eqsearch.app.cli import main
from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet import build_supernet, export_onnx, init_quantizers
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.deployment.deploy import quantize_layers
from supernet.deployment.export import (
    AgreementError,
    export_packed_weights,
    fp32_parameter_bytes,
    load_packed_weights,
    onnx_session,
)
from supernet.deployment.packed import pack_bits, unpack_bits
from supernet.files.checkpoint import save_supernet
from supernet.networks.calibrate import calibrate_bn
from supernet.networks.elastic import Supernet
from supernet.quantizers import QUANTIZERS, LsqQuantizer
from supernet.runtime import one_thread as single_thread

FORMS = ("channel-sym-sym", "channel-asym-asym", "tensor-sym-sym", "tensor-asym-asym")
DEPLOYED_FORMS = ("channel-sym-sym", "tensor-asym-asym")
"""The big torchvision models export in the two targets' forms (TensorRT's, a DSP's); every
form is exported by the small models and ResNet-20, on the same code path."""
MIN_AGREEMENT = 99.5
MIN_JOINT_AGREEMENT = 99.0
"""The elastic-architecture models, briefly trained at small sizes, keep near-tied logits
that a rounding tie flips (oqa_mbv3: 5 of 800 images in one subnet); the tie-aligned run
in the same test then asserts exact agreement."""
VERIFY_IMAGES = 800
# Every model trains briefly on the digits first (trained logits have margins; a random net's
# near-ties flip on any last-bit difference); the torchvision ones at 32×32.
FAST_MODELS = {"tiny_convnet": 8, "lenet5": 16}
TRAINED_SLOW_MODELS = {"resnet20": 8}
SLOW_MODELS = {"resnet18": 32, "mobilenet_v2": 32, "efficientnet_b0": 32, "resnet50": 32}
JOINT_MODELS = {"oqa_mbv3_tiny": 16}
"""Elastic-architecture models: their subnets are extracted, then exported."""
SLOW_JOINT_MODELS = {"oqa_mbv3_small": 16, "oqa_mbv3": 32}
JOINT_MIN_ACCURACY = {"oqa_mbv3": 30.0}
"""Top-1 (%, 10 digits) every tested subnet must reach: the ImageNet model's smallest W4A4
subnet reached 36 % at 32×32 after its 3 quantized rounds (chance is 10 %)."""
# Quantized post-training only, EfficientNet-B0 and ResNet-50 are so sensitive that one
# activation rounded the other way moves their logits by up to 37, and EfficientNet's 4-bit
# and mixed subnets collapse (12–60 % accuracy), so their logits hold near-ties. ONNX Runtime's
# Conv, BatchNormalization, Sigmoid and GlobalAveragePool differ from PyTorch's in the last bits
# of 14–43 % of their outputs, which sends inputs within 3e-4 steps of a rounding tie to the
# other side; top-1 agreement then landed at 98.9–100 %. Real exports come from
# quantization-aware training, so these two models also train briefly on the tested subnets
# (rounds over all of them; 20 rounds = 120 steps for EfficientNet, 10 for ResNet-50): their
# agreement then reached 99.875–100 % and 100 % (measured over all four forms, 12 subnets).
QUANTIZED_TRAIN_ROUNDS = {
    "efficientnet_b0": 20,
    "resnet50": 10,
    # the joint models' smallest 4-bit subnets collapse (18 %) when quantized post-training
    "oqa_mbv3_tiny": 5,
    "oqa_mbv3_small": 5,
    "oqa_mbv3": 3,
}
TIE_ALIGNED_MODELS = {"efficientnet_b0", "resnet50"}
"""Deep models whose export also passes the code-level check (see ``_tie_aligned_run``)."""
TIE_TOLERANCE = 1e-2
"""Distance in steps from a rounding tie within which the two runtimes may round differently."""
ALIGNED_MAX_LOGIT_DIFF = 1e-2
"""Largest logit difference allowed once PyTorch has taken ONNX Runtime's side of every tie."""
TRAIN_STEPS = {
    "tiny_convnet": 100,
    "lenet5": 60,
    "resnet20": 400,
    "resnet18": 150,
    "mobilenet_v2": 150,
    "efficientnet_b0": 150,
    "resnet50": 150,
    "oqa_mbv3_tiny": 150,
    "oqa_mbv3_small": 150,
    "oqa_mbv3": 150,
}


@cache
def _digits(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first digits (a fixed shuffle), normalised, resized to ``image_size``."""
    bundle = build_data(DataSpec(name="digits", holdout=100))
    train = list(bundle.calibration.batches())
    test_images, test_labels = bundle.test_tensors()
    images = torch.cat([*(x for x, _ in train), test_images])[:VERIFY_IMAGES]
    labels = torch.cat([*(y for _, y in train), test_labels])[:VERIFY_IMAGES]
    if image_size != images.shape[-1]:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    return images, labels


def _train_full_precision(
    supernet: Supernet, images: torch.Tensor, labels: torch.Tensor, steps: int = 100
) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    parameters = [p for n, p in supernet.named_parameters() if ".quantizer." not in n]
    optimizer = torch.optim.Adam(parameters, lr=3e-3)
    supernet.set_subnet(None)
    supernet.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (64,), generator=generator)
        loss = F.cross_entropy(supernet(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    supernet.eval()


@cache
def _supernet(model_name: str, image_size: int) -> tuple[Supernet, torch.Tensor, torch.Tensor]:
    """A supernet trained briefly in full precision, with calibrated quantizers, and its
    verification images and labels."""
    torch.manual_seed(0)
    images, labels = _digits(image_size)
    supernet = build_supernet(model_name, num_classes=10, in_channels=1, image_size=image_size)
    _train_full_precision(supernet, images, labels, TRAIN_STEPS[model_name])
    init_quantizers(supernet, images[:256])
    forms = DEPLOYED_FORMS if model_name in SLOW_MODELS else FORMS
    _train_quantized(supernet, images, labels, QUANTIZED_TRAIN_ROUNDS.get(model_name, 0), forms)
    return supernet, images, labels


def _train_quantized(
    supernet: Supernet,
    images: torch.Tensor,
    labels: torch.Tensor,
    rounds: int,
    forms: tuple[str, ...],
) -> None:
    """Quantization-aware steps on every tested subnet in turn, ``rounds`` times."""
    if rounds == 0:
        return
    tested = joint_configs if supernet.joint else _configs
    configs = [
        config for form in forms for config in tested(supernet, QuantForm.parse(form)).values()
    ]
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=1e-3)
    supernet.train()
    for _ in range(rounds):
        for config in configs:
            index = torch.randint(0, len(images), (64,), generator=generator)
            with supernet.using(config):
                loss = F.cross_entropy(supernet(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    supernet.eval()


def mixed_config(supernet: Supernet, form: QuantForm) -> SubnetConfig:
    """Different bits in every searched layer (cycled), pinned layers at their pins.

    Activations stay at 4 bits or more: the test nets are quantized after training only, and
    lower bits leave decisions so close that a last-bit float difference flips them.
    """
    w_cycle, a_cycle = (6, 4, 5, 8, 3, 7), (5, 8, 4, 6, 7, 6)
    choices = []
    for index, layer in enumerate(supernet.space.layers):
        bits = layer.pinned or (w_cycle[index % 6], a_cycle[index % 6])
        choices.append(LayerChoice(*bits, form=form))
    return supernet.space.validate(SubnetConfig(tuple(choices)))


def _configs(supernet: Supernet, form: QuantForm) -> dict[str, SubnetConfig]:
    space = supernet.space
    return {
        "8/8": space.uniform(8, 8, form),
        "4/4": space.uniform(4, 4, form),
        "mixed": mixed_config(supernet, form),
    }


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializer and Constant node values by name (also under aliasing Identity outputs)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _check_qdq_nodes(model: onnx.ModelProto, supernet: Supernet, config: SubnetConfig) -> None:
    """Each layer's DequantizeLinear holds its integers, zero points and axis; each input
    QuantizeLinear its step, zero point and grid (behind a Clip where the grid is narrower)."""
    constants = _constants(model)
    nodes = {out: node for node in model.graph.node for out in node.output}
    dequantize_by_weight = {
        n.input[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"
    }
    quantize_by_scale = {n.input[1]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    layers = supernet.elastic_layers()
    for name, quantization in quantize_layers(supernet, config).items():
        params = layers[name].quantizer.quant_params(quantization.choice)
        dequantize = dequantize_by_weight[f"{name}.weight.integers"]
        integers = constants[dequantize.input[0]]
        assert integers.dtype == np.int8
        assert np.array_equal(integers, quantization.weight_integers.numpy())
        zero_point = constants[dequantize.input[2]]
        assert np.array_equal(zero_point.reshape(-1), params.w_zero_point.numpy().reshape(-1))
        scale = constants[dequantize.input[1]]
        axis = [a.i for a in dequantize.attribute if a.name == "axis"]
        expected_step = params.w_step.numpy().reshape(-1)
        if config.choices[0].form.w_granularity.value == "channel":
            assert axis == [0] and scale.shape == expected_step.shape
        else:
            assert axis == [] and scale.shape == ()
        np.testing.assert_array_equal(scale.reshape(-1), expected_step)
        quantize = quantize_by_scale[f"{name}.input_quantizer.scale"]
        assert constants[quantize.input[1]] == params.a_step.numpy().reshape(())
        a_zero_point = constants[quantize.input[2]]
        assert int(a_zero_point) == int(params.a_zero_point.reshape(-1)[0])
        assert a_zero_point.dtype == (np.uint8 if params.a_qmin >= 0 else np.int8)
        storage = np.iinfo(a_zero_point.dtype)
        producer = nodes.get(quantize.input[0])
        if (params.a_qmin, params.a_qmax) != (storage.min, storage.max):
            assert producer is not None and producer.op_type == "Clip"
            step = np.float32(params.a_step.item())
            low, high = (constants[n] for n in producer.input[1:3])
            assert low == np.float32((params.a_qmin - int(a_zero_point)) * step)
            assert high == np.float32((params.a_qmax - int(a_zero_point)) * step)


def _tie_aligned_run(
    model: onnx.ModelProto, supernet: Supernet, config: SubnetConfig, images: torch.Tensor
) -> tuple[float, float, int, int]:
    """Compare ONNX Runtime with the subnet, letting PyTorch follow ORT's rounding at ties.

    ORT reports every layer's input codes (QuantizeLinear outputs). Where PyTorch rounds a layer
    input to another code and that input lies within ``TIE_TOLERANCE`` steps of a rounding tie,
    the subnet continues with ORT's code; any other differing code is counted, not aligned.
    The subnet must be in eval mode with the BN statistics of the export.

    Returns:
        ``(top1_agreement, max_logit_diff, tie_codes, other_mismatches)``.
    """
    quantizations = quantize_layers(supernet, config)
    layers = supernet.elastic_layers()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    quantize_by_scale = {n.input[1]: n for n in probe.graph.node if n.op_type == "QuantizeLinear"}
    code_outputs = {
        name: quantize_by_scale[f"{name}.input_quantizer.scale"].output[0] for name in layers
    }
    for output in code_outputs.values():
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(output))
    session = onnx_session(probe.SerializeToString())
    batch_codes: dict[str, np.ndarray] = {}
    counts = {"ties": 0, "other": 0}

    def follow_ties(name: str) -> Any:
        layer = layers[name]
        quantization = quantizations[name]
        step = np.float32(quantization.input_scale)
        zero_point = quantization.input_zero_point

        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
            x = args[0]
            ours = layer.quantizer.quantize_input(x, layer.active.handle).numpy()
            ours_codes = np.round(ours / step).astype(np.int64) + zero_point
            theirs = batch_codes[name].astype(np.int64).reshape(ours_codes.shape)
            differ = theirs != ours_codes
            if not differ.any():
                return None
            scaled = x.numpy().astype(np.float64) / float(step)
            near_tie = np.abs(scaled - np.floor(scaled) - 0.5) <= TIE_TOLERANCE
            ties = differ & near_tie
            counts["ties"] += int(ties.sum())
            counts["other"] += int((differ & ~near_tie).sum())
            aligned = x.clone()
            values = ((theirs[ties] - zero_point) * step).astype(np.float32)
            aligned[torch.from_numpy(ties)] = torch.from_numpy(values)
            return (aligned,)

        return hook

    names = list(code_outputs)
    onnx_logits, torch_logits = [], []
    handles = [layers[name].register_forward_pre_hook(follow_ties(name)) for name in names]
    try:
        with supernet.using(config), torch.no_grad():
            for batch in images.split(256):
                outputs = session.run(
                    ["logits", *code_outputs.values()], {"images": batch.float().numpy()}
                )
                batch_codes.update(zip(names, outputs[1:], strict=True))
                onnx_logits.append(outputs[0])
                torch_logits.append(supernet(batch).float().numpy())
    finally:
        for handle in handles:
            handle.remove()
    exported, reference = np.concatenate(onnx_logits), np.concatenate(torch_logits)
    agreement = float((exported.argmax(1) == reference.argmax(1)).mean() * 100.0)
    max_diff = float(np.abs(exported - reference).max())
    return agreement, max_diff, counts["ties"], counts["other"]


def _check_export(
    model_name: str,
    image_size: int,
    form_text: str,
    tmp_path: Path,
    *,
    tie_aligned: bool = False,
) -> None:
    supernet, images, labels = _supernet(model_name, image_size)
    form = QuantForm.parse(form_text)
    for label, config in _configs(supernet, form).items():
        path = tmp_path / f"{label.replace('/', '-')}.onnx"
        report = export_onnx(
            supernet,
            config,
            path,
            verify_images=images,
            verify_labels=labels,
            calibration_images=images[:256],
        )
        assert report.top1_agreement >= MIN_AGREEMENT, (label, report)
        assert report.images == len(images) and report.onnx_bytes == path.stat().st_size
        assert report.quantize_nodes == report.dequantize_nodes // 2 == len(config.choices)
        exported = onnx.load(path)
        # The BN statistics the export used: re-calibrate the same way for the expected scales.
        with supernet.using(config):
            calibrate_bn(supernet, images[:256])
        _check_qdq_nodes(exported, supernet, config)
        if tie_aligned:
            assert not supernet.training
            agreement, max_diff, ties, others = _tie_aligned_run(exported, supernet, config, images)
            outcome = (label, agreement, max_diff, ties, others, report)
            assert others == 0, outcome
            assert agreement >= MIN_AGREEMENT and max_diff <= ALIGNED_MAX_LOGIT_DIFF, outcome


def joint_configs(supernet: Supernet, form: QuantForm) -> dict[str, SubnetConfig]:
    """The largest architecture at 8/8, the smallest at 4/4, and two random architectures
    with different bits in every searched layer (activations at 4 bits or more, as above)."""
    space = supernet.space
    configs = {
        "largest-8/8": space.uniform(8, 8, form),
        "smallest-4/4": space.uniform(4, 4, form, arch="smallest"),
    }
    w_cycle, a_cycle = (6, 4, 5, 8, 3, 7), (5, 8, 4, 6, 7, 6)
    for seed in (1, 2):
        arch = space.sample(np.random.default_rng(seed)).arch
        choices = [
            LayerChoice(*(layer.pinned or (w_cycle[i % 6], a_cycle[i % 6])), form=form)
            for i, layer in enumerate(space.layers)
        ]
        configs[f"mixed-{seed}"] = space.canonical(SubnetConfig(tuple(choices), arch))
    return configs


@pytest.fixture
def one_thread():
    """Joint nets run many tiny ops; on the loaded 2-core machine two threads stall each
    other at every op."""
    with single_thread():
        yield


def _check_joint_export(model_name: str, image_size: int, form_text: str, tmp_path: Path) -> None:
    from supernet.networks.extract import extract

    supernet, images, labels = _supernet(model_name, image_size)
    for label, config in joint_configs(supernet, QuantForm.parse(form_text)).items():
        path = tmp_path / f"{label.replace('/', '-')}.onnx"
        report = export_onnx(
            supernet,
            config,
            path,
            verify_images=images,
            verify_labels=labels,
            calibration_images=images[:256],
        )
        assert report.top1_agreement >= MIN_JOINT_AGREEMENT, (label, report)
        # trained subnets, not collapsed ones whose agreement would say little
        floor = JOINT_MIN_ACCURACY.get(model_name, 60.0)
        assert report.torch_accuracy is not None and report.torch_accuracy >= floor, report
        assert report.quantize_nodes == report.dequantize_nodes // 2 == len(config.choices)
        static = extract(supernet, config, calibration_images=images[:256]).eval()
        static_config = static.active_subnet()
        assert static_config is not None
        assert report.fp32_bytes == fp32_parameter_bytes(static) <= fp32_parameter_bytes(supernet)
        exported = onnx.load(path)
        _check_qdq_nodes(exported, static, static_config)
        # every input code ORT computes is PyTorch's but for rounding ties (SE convs' biases
        # stay float: see DeployConv2d), and with ties aligned the logits agree to 1e-2
        agreement, max_diff, ties, others = _tie_aligned_run(
            exported, static, static_config, images
        )
        assert others == 0, (label, ties, others)
        assert agreement == 100.0 and max_diff <= ALIGNED_MAX_LOGIT_DIFF, (label, max_diff)
        packed = export_packed_weights(supernet, config, tmp_path / f"{path.stem}.npz")
        restored = load_packed_weights(packed.path)
        assert len(restored) == len(config.choices)
        for name, quantization in quantize_layers(supernet, config).items():
            assert np.array_equal(restored[name].integers, quantization.weight_integers.numpy())


@pytest.mark.parametrize(
    "form",
    ("channel-sym-sym", pytest.param("tensor-asym-asym", marks=pytest.mark.slow)),
)
@pytest.mark.parametrize("model_name", sorted(JOINT_MODELS))
def test_onnx_export_of_joint_subnets(
    model_name: str, form: str, tmp_path: Path, one_thread: None
) -> None:
    _check_joint_export(model_name, JOINT_MODELS[model_name], form, tmp_path)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("model_name", sorted(FAST_MODELS))
def test_onnx_export_agrees_with_pytorch(model_name: str, form: str, tmp_path: Path) -> None:
    _check_export(model_name, FAST_MODELS[model_name], form, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("model_name", sorted(TRAINED_SLOW_MODELS))
def test_onnx_export_of_deeper_models(model_name: str, form: str, tmp_path: Path) -> None:
    _check_export(model_name, TRAINED_SLOW_MODELS[model_name], form, tmp_path)


def test_batch_norm_folds_only_where_exact(tmp_path: Path) -> None:
    supernet, images, _ = _supernet("tiny_convnet", 8)
    channel = supernet.space.uniform(4, 4, QuantForm.parse("channel-sym-sym"))
    tensor = supernet.space.uniform(4, 4, QuantForm.parse("tensor-sym-sym"))
    folded = export_onnx(
        supernet, channel, tmp_path / "c.onnx", verify_images=images[:64], fold_batch_norm=True
    )
    assert (folded.folded_batch_norms, folded.kept_batch_norms) == (3, 0)
    kept = export_onnx(
        supernet, tensor, tmp_path / "t.onnx", verify_images=images[:64], fold_batch_norm=True
    )
    assert (kept.folded_batch_norms, kept.kept_batch_norms) == (0, 3)
    unfolded = export_onnx(supernet, channel, tmp_path / "u.onnx", verify_images=images[:64])
    assert (unfolded.folded_batch_norms, unfolded.kept_batch_norms) == (0, 3)
    # Without folding, every per-channel scale is exactly the learned step.
    model = onnx.load(tmp_path / "u.onnx")
    constants = _constants(model)
    layers = supernet.elastic_layers()
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].endswith(".weight.integers"):
            name = node.input[0].removesuffix(".weight.integers")
            choice = channel.choices[list(layers).index(name)]
            step = layers[name].quantizer.quant_params(choice).w_step.numpy()
            np.testing.assert_array_equal(constants[node.input[1]], step)


def test_full_precision_layers_stay_float(tmp_path: Path) -> None:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, image_size=8, first_last="fp"
    )
    images, labels = _digits(8)
    _train_full_precision(supernet, images, labels)
    init_quantizers(supernet, images[:256])
    config = supernet.space.uniform(4, 4, QuantForm.parse("tensor-asym-asym"))
    report = export_onnx(
        supernet, config, tmp_path / "fp.onnx", verify_images=images, calibration_images=images
    )
    assert report.top1_agreement >= MIN_AGREEMENT
    assert report.quantize_nodes == len(config.choices) - 2


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_pack_bits_round_trips(bits: int) -> None:
    values = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    values[:2] = (0, (1 << bits) - 1)
    packed = pack_bits(values, bits)
    assert packed.nbytes == -(-values.size * bits // 8)
    assert np.array_equal(unpack_bits(packed, bits, values.size), values)


@pytest.mark.parametrize("form", FORMS)
def test_packed_weights_unpack_to_the_quantized_weights(form: str, tmp_path: Path) -> None:
    supernet, _, _ = _supernet("lenet5", 16)
    for label, config in _configs(supernet, QuantForm.parse(form)).items():
        path = tmp_path / f"{label.replace('/', '-')}.npz"
        report = export_packed_weights(supernet, config, path)
        assert report.file_bytes == path.stat().st_size < report.fp32_bytes
        restored = load_packed_weights(path)
        expected = quantize_layers(supernet, config)
        layers = supernet.elastic_layers()
        assert list(restored) == list(expected)
        for name, layer in restored.items():
            assert layer.integers is not None
            assert np.array_equal(layer.integers, expected[name].weight_integers.numpy())
            assert layer.integers.min() >= layer.qmin and layer.integers.max() <= layer.qmax
            with supernet.using(config):
                weight = layers[name].quantized_weight().detach().numpy()
            np.testing.assert_array_equal(layer.dequantize(), weight)
    # 4-bit weights take half a byte each, 8-bit ones a byte
    four = export_packed_weights(
        supernet, supernet.space.uniform(4, 4, QuantForm.parse(form)), tmp_path / "4.npz"
    )
    eight = export_packed_weights(
        supernet, supernet.space.uniform(8, 8, QuantForm.parse(form)), tmp_path / "8.npz"
    )
    assert four.payload_bytes < 0.6 * eight.payload_bytes


def test_unexportable_quantizer_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "n2uq" not in QUANTIZERS:
        stand_in = type("N2uqStandIn", (LsqQuantizer,), {"name": "n2uq"})
        monkeypatch.setitem(QUANTIZERS, "n2uq", stand_in)
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, quantizer="n2uq", w_bits=(2, 4), a_bits=(2, 4)
    )
    config = supernet.space.uniform(4, 4)
    path = tmp_path / "n2uq.onnx"
    with pytest.raises(ValueError, match=r"n2uq.*non-uniform"):
        export_onnx(supernet, config, path, verify_images=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="n2uq"):
        export_packed_weights(supernet, config, tmp_path / "n2uq.npz")
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_refused_and_write_nothing(tmp_path: Path) -> None:
    supernet, images, _ = _supernet("tiny_convnet", 8)
    config = supernet.space.uniform(4, 4)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"a-file is not a directory"):
        export_onnx(supernet, config, blocker / "m.onnx", verify_images=images)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(supernet, config, tmp_path / "m.onnx", verify_images=images, opset=11)
    with pytest.raises(ValueError, match="opset must be <="):
        export_onnx(supernet, config, tmp_path / "m.onnx", verify_images=images, opset=999)
    with pytest.raises(AgreementError, match=r"m\.onnx was not written") as failed:
        export_onnx(supernet, config, tmp_path / "m.onnx", verify_images=images, min_agreement=101)
    assert failed.value.report.top1_agreement == 100.0  # measured, then refused
    blocker.unlink()
    too_short = SubnetConfig(config.choices[:-1])
    with pytest.raises(ValueError, match="layer choices"):
        export_onnx(supernet, too_short, tmp_path / "m.onnx", verify_images=images)
    wide = build_supernet("tiny_convnet", num_classes=3, in_channels=1, w_bits=(4, 12))
    with pytest.raises(ValueError, match="w_bits=12"):
        export_onnx(wide, wide.space.uniform(12, 8), tmp_path / "w.onnx", verify_images=images[:4])
    with pytest.raises(ValueError, match=r"\.npz"):
        export_packed_weights(supernet, config, tmp_path / "w.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    supernet, _, _ = _supernet("tiny_convnet", 8)
    path = tmp_path_factory.mktemp("run") / "supernet.pt"
    data = DataSpec(name="digits", holdout=100).to_dict()
    save_supernet(path, supernet, data=data, train_config={"bn_images": 256})
    return path


def test_cli_exports_onnx_and_packed_weights(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.onnx"
    code = main(["export", "--supernet", str(checkpoint), "--uniform", "4/4", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "top-1 agreement" in printed and "max |logit diff|" in printed and "ONNX file" in printed
    int4 = tmp_path / "int4.onnx"
    arguments = ["export", "--supernet", str(checkpoint), "--uniform", "4/4", "--output", str(int4)]
    assert main([*arguments, "--int4-weights"]) == 0
    printed = capsys.readouterr().out
    assert "INT4 weights" in printed and int4.stat().st_size < out.stat().st_size
    config = tmp_path / "cfg.json"
    supernet, _, _ = _supernet("tiny_convnet", 8)
    config.write_text(
        __import__("json").dumps(mixed_config(supernet, supernet.space.forms[0]).to_dict())
    )
    weights = tmp_path / "model.npz"
    code = main(
        [
            "export",
            "--supernet",
            str(checkpoint),
            "--subnet",
            str(config),
            "--output",
            str(weights),
            "--format",
            "weights",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and weights.is_file()
    assert "FP32 size" in printed and "file on disk" in printed


@pytest.mark.parametrize("form", FORMS)
def test_int4_weights_store_the_same_integers_in_half_the_bytes(form: str, tmp_path: Path) -> None:
    supernet, images, labels = _supernet("lenet5", FAST_MODELS["lenet5"])
    config = mixed_config(supernet, QuantForm.parse(form))
    low_bits = {
        name
        for name, quantization in quantize_layers(supernet, config).items()
        if not quantization.choice.full_precision and quantization.choice.w_bits <= 4
    }
    assert low_bits and len(low_bits) < len(config.choices)  # some layers INT4, some not
    reports = {}
    for int4 in (False, True):
        path = tmp_path / f"int4-{int4}.onnx"
        reports[int4] = export_onnx(
            supernet,
            config,
            path,
            verify_images=images,
            verify_labels=labels,
            calibration_images=images[:256],
            int4_weights=int4,
        )
    plain, packed = reports[False], reports[True]
    assert (plain.opset, packed.opset) == (17, 21) and packed.int4_layers == len(low_bits)
    # the same integers, so the same logits
    assert packed.max_logit_diff == pytest.approx(plain.max_logit_diff, abs=1e-6)
    assert packed.top1_agreement == plain.top1_agreement >= MIN_AGREEMENT
    model = onnx.load(packed.path)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [21]
    initializers = {t.name: t for t in model.graph.initializer}
    quantizations = quantize_layers(supernet, config)
    saved = 0
    for name, quantization in quantizations.items():
        if quantization.choice.full_precision:
            continue
        tensor = initializers[f"{name}.weight.integers"]
        expected_type = onnx.TensorProto.INT4 if name in low_bits else onnx.TensorProto.INT8
        assert tensor.data_type == expected_type, name
        values = numpy_helper.to_array(tensor)
        assert np.array_equal(values.astype(np.int64), quantization.weight_integers.numpy()), name
        if name in low_bits:
            saved += values.size - (values.size + 1) // 2
    assert plain.onnx_bytes - packed.onnx_bytes >= saved * 0.95
    with pytest.raises(ValueError, match="opset >= 21"):
        export_onnx(
            supernet, config, tmp_path / "x.onnx", verify_images=images, int4_weights=True, opset=17
        )
    assert not (tmp_path / "x.onnx").exists()


def test_cli_bad_input_exits_2_without_writing(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.onnx"
    base = ["export", "--supernet", str(checkpoint), "--output", str(out)]
    for extra in (
        [],
        ["--uniform", "4/4", "--subnet", "x.json"],
        ["--uniform", "9/9"],
        ["--uniform", "4/4", "--form", "diagonal-sym-sym"],
        ["--subnet", str(tmp_path / "missing.json")],
        ["--uniform", "4/4", "--format", "weights"],
        ["--uniform", "4/4", "--int4-weights", "--opset", "17"],
    ):
        assert main([*base, *extra]) == 2, extra
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
    assert (
        main(
            [
                "export",
                "--supernet",
                str(tmp_path / "none.pt"),
                "--uniform",
                "4/4",
                "--output",
                str(out),
            ]
        )
        == 2
    )
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []


def test_every_registered_model_has_an_export_test() -> None:
    from supernet.networks.models import MODELS

    tested = (
        set(FAST_MODELS)
        | set(TRAINED_SLOW_MODELS)
        | set(SLOW_MODELS)
        | set(JOINT_MODELS)
        | set(SLOW_JOINT_MODELS)
    )
    assert tested == set(MODELS)
    assert tested == set(TRAIN_STEPS)
