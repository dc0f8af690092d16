"""The OQA MobileNetV3 joint supernets: slicing, shared quantizers, extraction, costs, training."""

from __future__ import annotations

import math
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch import costs
from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet import build_supernet, init_quantizers
from supernet.evaluation.inference import fast_inference
from supernet.evaluation.oracle import subnet_accuracy
from supernet.files.checkpoint import load_supernet, save_supernet
from supernet.networks.calibrate import calibrate_bn
from supernet.networks.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicQuantConv2d
from supernet.networks.elastic import Supernet
from supernet.networks.extract import extract
from supernet.networks.models import MODELS
from supernet.quantizers import QuantizerSpec
from supernet.runtime import one_thread as single_thread
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet
from supernet.training.pretrain import reorder_channels
from supernet.training.sandwich import draw_sandwich

JOINT_MODELS = sorted(name for name, entry in MODELS.items() if entry.joint)
SIZES = {"oqa_mbv3": 32, "oqa_mbv3_small": 32, "oqa_mbv3_tiny": 28}
"""ImageNet's model at 32×32 keeps the test fast; its space follows the resolution."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets run hundreds of tiny ops per step; on the shared, loaded 2-core machine two
    threads wait for each other at every op (a step took 15-25x longer than on one thread)."""
    with single_thread():
        yield


@cache
def joint_supernet(name: str) -> tuple[Supernet, torch.Tensor]:
    """A supernet with its quantizers' default steps (no calibration: the largest model's
    clipping search takes a minute) and BN statistics of random images."""
    torch.manual_seed(0)
    size = SIZES[name]
    supernet = build_supernet(name, num_classes=5, in_channels=3, image_size=size)
    images = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(1))
    with supernet.using(None):
        calibrate_bn(supernet, images)
    return supernet.eval(), images


def random_configs(supernet: Supernet, n: int, seed: int) -> list[SubnetConfig]:
    space = supernet.space
    sampled = space.sample(np.random.default_rng(seed), n, forms="per_layer")
    return [space.largest(), space.smallest(), *sampled]


def test_joint_models_are_registered_with_their_choice_sets() -> None:
    assert JOINT_MODELS == ["oqa_mbv3", "oqa_mbv3_small", "oqa_mbv3_tiny"]
    assert MODELS["oqa_mbv3"].architecture == {
        "depths": (2, 3, 4),
        "expands": (3, 4, 6),
        "kernels": (3, 5, 7),
    }
    space = build_supernet("oqa_mbv3", num_classes=1000).space
    assert space.n_layers == 90 and len(space.genes) == 45
    narrow = build_supernet(
        "oqa_mbv3_tiny", num_classes=3, in_channels=1, architecture={"kernels": (3,)}
    )
    assert {g.name.rpartition(".")[2] for g in narrow.space.genes} >= {"kernel"}
    assert all(g.values == (3,) for g in narrow.space.genes if g.name.endswith("kernel"))
    assert narrow.build_info["space"]["architecture"]["kernels"] == [3]
    with pytest.raises(ValueError, match="takes the architecture options"):
        build_supernet("oqa_mbv3_tiny", num_classes=3, architecture={"widths": (1,)})
    with pytest.raises(ValueError, match="fixed architecture"):
        build_supernet("lenet5", num_classes=3, architecture={"depths": (1,)})


@pytest.mark.parametrize("name", JOINT_MODELS)
def test_extracted_network_equals_the_supernet_and_its_costs(name: str) -> None:
    supernet, images = joint_supernet(name)
    space = supernet.space
    for config in random_configs(supernet, 1 if name == "oqa_mbv3" else 3, seed=5):
        with torch.no_grad(), supernet.using(config):
            expected = supernet(images)
        static = extract(supernet, config).eval()
        assert not static.joint and static.active_subnet() == SubnetConfig(config.choices)
        with torch.no_grad():
            got = static(images)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # the static space is measured by forward hooks on the plain network
        plain = [m for m in static.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(plain) == len(config.choices) == static.space.n_layers
        assert sum(layer.macs for layer in static.space.layers) == costs.macs(space, config)
        assert sum(layer.n_params for layer in static.space.layers) == (
            costs.parameter_count(space, config)
        )
        joint_costs = costs.cost_table(space, [config])
        static_costs = costs.cost_table(static.space, [static.active_subnet()])
        for key, values in static_costs.items():
            np.testing.assert_allclose(values, joint_costs[key], rtol=1e-12, err_msg=key)
        assert [layer.name for layer in static.space.layers] == [
            space.layers[index].name for index in space.active_layers(config)
        ]


def test_extraction_recalibrates_bn_for_the_subnet_and_leaves_the_supernet() -> None:
    supernet, images = joint_supernet("oqa_mbv3_tiny")
    config = supernet.space.smallest()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    static = extract(supernet, config, calibration_images=images).eval()
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, before[key]), key
    with supernet.using(config), torch.no_grad():
        calibrate_bn(supernet, images)
        expected = supernet(images)
    torch.testing.assert_close(static(images), expected, rtol=1e-5, atol=1e-5)
    supernet.load_state_dict(before)


def test_kernel_width_and_depth_slicing_equal_plain_layers() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 12, 9, 9)
    conv = DynamicConv2d(12, 20, 7, 2, bias=True)
    conv.set_shape(8, 10, 3)
    plain = nn.Conv2d(8, 10, 3, 2, padding=1, bias=True)
    with torch.no_grad():
        plain.weight.copy_(conv.weight[:10, :8, 2:5, 2:5])
        plain.bias.copy_(conv.bias[:10])
    torch.testing.assert_close(conv(x[:, :8]), plain(x[:, :8]), rtol=0, atol=0)
    depthwise = DynamicConv2d(12, 12, 5, depthwise=True)
    depthwise.set_shape(6, 6, 3)
    plain_dw = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    with torch.no_grad():
        plain_dw.weight.copy_(depthwise.weight[:6, :, 1:4, 1:4])
    torch.testing.assert_close(depthwise(x[:, :6]), plain_dw(x[:, :6]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="odd"):
        depthwise.set_shape(6, 6, 4)
    with pytest.raises(ValueError, match="exceed"):
        conv.set_shape(13, 10)
    norm = DynamicBatchNorm2d(12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        norm.running_mean.uniform_(-1, 1)
    reference = nn.BatchNorm2d(7)
    reference.load_state_dict({k: v[:7] if v.dim() else v for k, v in norm.state_dict().items()})
    for mode in (False, True):
        norm.train(mode)
        reference.train(mode)
        torch.testing.assert_close(norm(x[:, :7]), reference(x[:, :7]))
    torch.testing.assert_close(norm.running_mean[:7], reference.running_mean)
    assert torch.equal(norm.running_var[7:], torch.ones(5))  # inactive channels untouched
    # depth: a stage runs its first d blocks, a plain sequence of those blocks
    supernet, _ = joint_supernet("oqa_mbv3_tiny")
    stage = supernet.model.stage2
    arch = supernet.space.largest().arch_dict
    arch["stage2.depth"] = 1
    with torch.no_grad():
        supernet.model.set_arch(arch)
        features = torch.randn(2, 16, 7, 7)
        assert torch.equal(stage(features), stage.block1(features))
        supernet.model.set_arch(None)
        assert torch.equal(stage(features), stage.block2(stage.block1(features)))


@pytest.mark.parametrize("name", JOINT_MODELS)
def test_quantized_weights_of_active_layers_sit_on_their_grid(name: str) -> None:
    supernet, _ = joint_supernet(name)
    layers = supernet.elastic_layers()
    for config in random_configs(supernet, 2, seed=8):
        with supernet.using(config):
            for layer, choice in zip(
                layers.values(), supernet.space.layer_choices(config), strict=True
            ):
                if choice is None or choice.full_precision:
                    continue
                weight = layer.quantized_weight().detach()
                rows = weight.reshape(weight.shape[0], -1)
                if choice.form.per_channel:
                    levels = max(len(torch.unique(row)) for row in rows)
                else:
                    levels = len(torch.unique(rows))
                assert levels <= 2**choice.w_bits


def test_one_step_size_per_layer_bits_and_form_shared_by_architectures() -> None:
    supernet, images = joint_supernet("oqa_mbv3_tiny")
    space = supernet.space
    layer = supernet.elastic_layers()["stage2.block1.expand"]
    quantizer = layer.quantizer
    entries = len(space.w_bits) * len(space.granularities) * len(space.w_symmetries)
    assert len(quantizer.weight_log_steps) == entries  # whatever the expand ratio
    form = QuantForm("channel", True, True)
    wide = space.uniform(4, 4, form)
    arch = dict(wide.arch)
    arch["stage2.block1.expand"] = 3
    narrow = space.uniform(4, 4, form, arch=arch)
    choice = LayerChoice(4, 4, form)
    shared = quantizer.parameters_for(choice)
    gradients = []
    for config in (wide, narrow):
        supernet.zero_grad(set_to_none=True)
        with supernet.using(config):
            assert quantizer.parameters_for(choice) == shared
            F.cross_entropy(supernet(images), torch.zeros(len(images), dtype=torch.long)).backward()
        gradients.append(quantizer.weight_log_steps["b4_channel_sym"].grad.clone())
    narrow_width = supernet.model.stage2.block1.middle_widths[3]
    # per-channel steps are sliced: the narrow subnet touches only its first channels
    assert torch.count_nonzero(gradients[1][narrow_width:]) == 0
    assert torch.count_nonzero(gradients[0][narrow_width:]) > 0


def test_lsq_gradient_scale_follows_the_active_shape() -> None:
    torch.manual_seed(0)
    spec = QuantizerSpec(w_bits=(4,), a_bits=(4,), granularities=("tensor",))
    layer = DynamicQuantConv2d(16, 24, 3, spec=spec)
    choice = LayerChoice(4, 4, QuantForm("tensor", True, True))
    layer.set_choice(choice)
    step = layer.quantizer.weight_log_steps["b4_tensor_sym"]
    for out_channels in (24, 8):
        layer.set_shape(16, out_channels, 3)
        step.grad = None
        layer.quantized_weight().sum().backward()
        # the same STE gradient, by hand, with LSQ's scale 1/sqrt(N·Qp) of the active weight
        weight = layer.weight.detach()[:out_channels]
        value = step.detach().exp()
        scaled = weight / value
        inside = (scaled >= -8.5) & (scaled <= 7.5)
        raw = torch.where(inside, torch.round(scaled) - scaled, torch.clamp(scaled.round(), -8, 7))
        expected = raw.sum() * value / math.sqrt(weight.numel() * 7)  # d/dlog s = s·d/ds
        torch.testing.assert_close(
            step.grad.reshape(()), expected.reshape(()), rtol=1e-4, atol=1e-6
        )


def test_set_subnet_is_fast_and_checks_configs() -> None:
    supernet = build_supernet("oqa_mbv3", num_classes=10, image_size=32)
    configs = supernet.space.sample(0, 60, forms="per_layer")
    for config in configs:
        supernet.set_subnet(config)
    timings = []
    for config in configs:
        start = time.perf_counter()
        supernet.set_subnet(config)
        timings.append(time.perf_counter() - start)
    # the benchmark target is 1 ms; slack for a loaded machine
    assert float(np.median(timings)) < 5e-3
    last = configs[-1]
    with pytest.raises(ValueError, match="lacks the architecture gene"):
        supernet.set_subnet(SubnetConfig(last.choices))
    assert supernet.active_subnet() == last


def test_sandwich_draws_largest_random_and_smallest_architectures() -> None:
    supernet, _ = joint_supernet("oqa_mbv3_small")
    space = supernet.space
    rng = np.random.default_rng(3)
    for _ in range(5):
        high, *randoms, low = draw_sandwich(space, rng, space.w_bits, random_subnets=2)
        form = high.uniform_form
        assert form is not None and high == space.largest(form)
        assert low == space.smallest(low.uniform_form)
        for config in randoms:
            assert space.canonical(config) == config
    archs = {
        config.arch
        for _ in range(20)
        for config in draw_sandwich(space, rng, space.w_bits, random_subnets=1)[1:2]
    }
    assert len(archs) > 10


def test_reordering_channels_keeps_the_largest_network_and_sorts_importance() -> None:
    torch.manual_seed(0)
    supernet = build_supernet("oqa_mbv3_tiny", num_classes=4, in_channels=1)
    images = torch.randn(4, 1, 28, 28)
    supernet.eval()
    with torch.no_grad():
        before = supernet(images)
        assert reorder_channels(supernet)
        after = supernet(images)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    project = supernet.model.stage1.block1.project.weight
    importance = project.detach().abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    init_quantizers(supernet, images)
    with pytest.raises(ValueError, match="before initialising the quantizers"):
        reorder_channels(supernet)


def test_checkpoints_of_joint_and_extracted_supernets_round_trip(tmp_path: Path) -> None:
    supernet, images = joint_supernet("oqa_mbv3_tiny")
    save_supernet(tmp_path / "joint.pt", supernet)
    loaded, payload = load_supernet(tmp_path / "joint.pt")
    assert payload["version"] == 2 and loaded.space == supernet.space
    config = supernet.space.sample(4)
    static = extract(supernet, config)
    save_supernet(tmp_path / "static.pt", static)
    rebuilt, payload = load_supernet(tmp_path / "static.pt")
    assert payload["version"] == 1 and rebuilt.space == static.space
    with torch.no_grad():
        for model in (supernet, loaded):
            model.set_subnet(config)
        rebuilt.set_subnet(static.active_subnet())
        static.eval()
        torch.testing.assert_close(loaded(images), supernet(images))
        torch.testing.assert_close(rebuilt(images), static(images))
    supernet.set_subnet(None)


TINY_JOINT = TrainConfig(
    model="oqa_mbv3_tiny",
    dataset="digits",
    epochs=2,
    fp_epochs=1,
    batch_size=128,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=200,
    bn_images=200,
    quant_init_images=64,
    seed=2,
)


def test_joint_training_resumes_exactly_and_scores_both_ends(tmp_path: Path) -> None:
    straight = train_supernet(TINY_JOINT, tmp_path / "straight", progress=False)
    assert straight.supernet.joint
    entries = [entry for entry in straight.history if entry["phase"] == "supernet"]
    assert len(entries) == 2 and all(0 <= e["acc_smallest"] <= 100 for e in entries)
    partial = train_supernet(TINY_JOINT, tmp_path / "partial", progress=False, stop_after=1)
    assert partial.history[-1]["epoch"] == 1
    resumed = train_supernet(TINY_JOINT, tmp_path / "partial", resume=True, progress=False)
    for key, value in straight.supernet.state_dict().items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key
    loaded, _ = load_supernet(tmp_path / "partial" / "supernet.pt")
    assert loaded.space == straight.supernet.space


def test_fast_oracle_path_scores_joint_subnets_like_the_plain_path() -> None:
    supernet, _ = joint_supernet("oqa_mbv3_tiny")
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(40, 3, 28, 28, generator=generator)
    labels = torch.randint(0, 5, (40,), generator=generator)
    for config in random_configs(supernet, 3, seed=5):
        with supernet.using(config), torch.no_grad():
            plain_logits = supernet(images)
            with fast_inference(supernet):
                # frozen operands are used for the frozen shape, and a changed architecture
                # inside takes the plain path (never a stale weight of another shape)
                fast_logits = supernet(images)
                supernet.set_subnet(supernet.space.smallest())
                inside_smallest = supernet(images)
                supernet.set_subnet(config)
        with supernet.using(supernet.space.smallest()), torch.no_grad():
            smallest_logits = supernet(images)
        torch.testing.assert_close(fast_logits, plain_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(inside_smallest, smallest_logits, rtol=1e-5, atol=1e-5)
        fast = subnet_accuracy(supernet, config, images, labels, images[:16], batch_size=20)
        plain = subnet_accuracy(
            supernet, config, images, labels, images[:16], batch_size=20, fast=False
        )
        assert fast == plain
    dynamic = [m for m in supernet.modules() if isinstance(m, DynamicQuantConv2d)]
    assert all(layer.active.frozen is None for layer in dynamic)


def test_n2uq_runs_on_a_joint_supernet_with_the_active_slices_statistics() -> None:
    from eqsearch.space.spec import SpaceSpec
    from supernet.quantizers.n2uq_ops import n2uq_weight

    torch.manual_seed(0)
    supernet = build_supernet(
        "oqa_mbv3_tiny",
        num_classes=5,
        in_channels=1,
        image_size=8,
        space=SpaceSpec(quantizer="n2uq"),
    )
    images = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    init_quantizers(supernet, images)
    supernet.eval()
    config = supernet.space.smallest()
    supernet.set_subnet(config)
    layer = supernet.elastic_layers()["stage1.block1.depthwise"]
    assert isinstance(layer, DynamicQuantConv2d) and layer.active_weight().shape[2] == 3
    # N2UQ's weight grid comes from the statistics of the weight it quantizes: the active slice
    expected = n2uq_weight(layer.active_weight(), layer.active.choice.w_bits)
    torch.testing.assert_close(layer.quantized_weight(), expected)
    with torch.no_grad():
        plain = supernet(images)
        with fast_inference(supernet):
            fast = supernet(images)
    torch.testing.assert_close(fast, plain)
