"""Contract tests over every registered model, and the measured layer specs."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet import MODELS, build_supernet, init_quantizers
from supernet.networks.elastic import parse_first_last
from supernet.networks.models import create_model

SMALL_SIZES = {"tiny_convnet": 8, "lenet5": 28, "resnet20": 16}


def small_supernet(name: str, **kwargs):
    return build_supernet(name, num_classes=5, image_size=SMALL_SIZES.get(name, 32), **kwargs)


def _estimate_batch_norm(model: torch.nn.Module, images: torch.Tensor) -> None:
    # Randomly initialised deep nets (EfficientNet) vanish under default BN statistics.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()


@pytest.fixture(scope="module", params=sorted(MODELS))
def calibrated(request: pytest.FixtureRequest):
    supernet = small_supernet(request.param, w_bits=(2, 4, 8), a_bits=(2, 4, 8))
    size = supernet.build_info["image_size"]
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    _estimate_batch_norm(supernet, images)
    init_quantizers(supernet, images)
    return supernet, images


def test_largest_smallest_random_forward(calibrated) -> None:
    supernet, images = calibrated
    space = supernet.space
    configs = [
        space.largest(),
        space.smallest(QuantForm("tensor", False, False)),
        *space.sample(np.random.default_rng(0), 2, forms="per_layer"),
    ]
    with torch.no_grad():
        for config in configs:
            supernet.set_subnet(config)
            out = supernet(images)
            assert out.shape == (4, 5)
            assert torch.isfinite(out).all()
    supernet.set_subnet(None)


def test_invalid_configs_raise_value_errors(calibrated) -> None:
    supernet, _ = calibrated
    space = supernet.space
    good = space.largest()
    with pytest.raises(ValueError, match=r"layer choices but (the space has|its architecture)"):
        supernet.set_subnet(SubnetConfig(good.choices[:-1], good.arch))
    index = space.elastic_indices[0]
    bad = list(good.choices)
    bad[index] = LayerChoice(3, 4, good.choices[index].form)
    with pytest.raises(ValueError, match="w_bits 3 is not in the space"):
        supernet.set_subnet(SubnetConfig(tuple(bad), good.arch))
    pinned = list(good.choices)
    pinned[0] = LayerChoice(2, 2)
    with pytest.raises(ValueError, match="pinned to w8/a8"):
        supernet.set_subnet(SubnetConfig(tuple(pinned), good.arch))
    with pytest.raises(ValueError, match="expected a SubnetConfig"):
        supernet.set_subnet("4/4")  # type: ignore[arg-type]


def test_switching_changes_and_restores_output_exactly(calibrated) -> None:
    supernet, images = calibrated
    space = supernet.space
    high, low = space.largest(), space.smallest()
    with torch.no_grad():
        supernet.set_subnet(high)
        first = supernet(images)
        supernet.set_subnet(low)
        other = supernet(images)
        supernet.set_subnet(high)
        again = supernet(images)
        with supernet.using(None):
            full = supernet(images)
        assert supernet.active_subnet() == high
    assert not torch.equal(first, other)
    assert torch.equal(first, again)
    assert not torch.equal(full, first)


def test_every_model_has_pinned_first_and_last_layers(calibrated) -> None:
    supernet, _ = calibrated
    space = supernet.space
    assert space.layers[0].pinned == (8, 8) and space.layers[-1].pinned == (8, 8)
    assert all(layer.pinned is None for layer in space.layers[1:-1])
    assert list(supernet.elastic_layers()) == [layer.name for layer in space.layers]
    assert space.layers[-1].kind == "linear"


def test_lenet5_layer_specs_by_hand() -> None:
    space = build_supernet("lenet5", num_classes=10, in_channels=1).space
    conv1, conv2, fc1, fc2, fc3 = space.layers
    assert (conv1.n_params, conv1.macs, conv1.n_inputs) == (150, 28 * 28 * 6 * 25, 784)
    assert (conv2.n_params, conv2.macs, conv2.n_inputs) == (2400, 10 * 10 * 16 * 150, 6 * 14 * 14)
    assert (fc1.n_params, fc1.macs, fc1.n_inputs) == (400 * 120, 400 * 120, 400)
    assert (fc3.out_channels, fc3.kind) == (10, "linear")
    assert fc2.name == "classifier.3"


def test_depthwise_macs_count_groups() -> None:
    space = small_supernet("mobilenet_v2").space
    depthwise = next(layer for layer in space.layers if layer.n_params == layer.out_channels * 9)
    assert depthwise.macs == depthwise.n_params * (depthwise.n_inputs // depthwise.out_channels)


def test_first_last_policies() -> None:
    assert parse_first_last("8/8") == (8, 8)
    assert parse_first_last("fp") == (32, 32)
    assert parse_first_last("elastic") is None
    with pytest.raises(ValueError, match="first_last"):
        parse_first_last("huge")
    fp = build_supernet("tiny_convnet", num_classes=3, first_last="fp")
    assert fp.space.layers[0].pinned == (32, 32)
    fp.set_subnet(fp.space.smallest())
    x = torch.randn(2, 3, 8, 8)
    assert torch.isfinite(fp(x)).all()
    elastic = build_supernet("tiny_convnet", num_classes=3, first_last="elastic")
    assert elastic.space.pinned_indices == ()


def test_create_model_errors() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        create_model("vgg", num_classes=10)
    with pytest.raises(ValueError, match="image_size >= 12"):
        create_model("lenet5", num_classes=10, image_size=8)
    with pytest.raises(ValueError, match="never downloads"):
        create_model("resnet18", num_classes=10, pretrained=True)
    with pytest.raises(ValueError, match="no torchvision pretrained"):
        create_model("lenet5", num_classes=10, pretrained=True)


def test_set_subnet_on_resnet50_is_fast() -> None:
    supernet = build_supernet("resnet50", num_classes=10, image_size=32)
    configs = supernet.space.sample(0, 50, forms="per_layer")
    supernet.set_subnet(configs[0])
    timings = []
    for config in configs:
        start = time.perf_counter()
        supernet.set_subnet(config)
        timings.append(time.perf_counter() - start)
    # The benchmark target is 1 ms; the test allows slack for a loaded CI machine.
    assert float(np.median(timings)) < 5e-3


def test_the_package_exports_what_the_design_promises() -> None:
    import supernet

    promised = [
        "build_supernet",
        "load_supernet",
        "save_supernet",
        "TrainConfig",
        "train_supernet",
        "calibrate_bn",
        "SupernetOracle",
        "export_onnx",
        "init_quantizers",
    ]
    for name in promised:
        assert name in supernet.__all__ and callable(getattr(supernet, name)), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_building_a_supernet_keeps_freed_memory_unless_told_not_to() -> None:
    import os
    import subprocess

    script = (
        "import supernet.runtime as r; from supernet import build_supernet; "
        "build_supernet('tiny_convnet', num_classes=2, in_channels=1, image_size=8); "
        "print(r._applied)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("EQSEARCH_MALLOC_DEFAULTS", None)
    for value, expected in ((None, "True"), ("1", "False")):
        if value is not None:
            env["EQSEARCH_MALLOC_DEFAULTS"] = value
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        assert result.stdout.strip().splitlines()[-1] == expected
