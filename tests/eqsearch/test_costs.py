"""Cost models against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.space import ElasticSpace, LayerChoice, LayerSpec, QuantForm, SubnetConfig

CHANNEL_SYM = QuantForm("channel", True, True)
TENSOR_ASYM = QuantForm("tensor", False, False)


def config_of(bits: list[tuple[int, int]], form: QuantForm = CHANNEL_SYM) -> SubnetConfig:
    return SubnetConfig(tuple(LayerChoice(w, a, form) for w, a in bits))


def test_average_bits_weight_by_params_and_skip_pinned(space: ElasticSpace) -> None:
    config = config_of([(8, 8), (2, 3), (4, 5), (8, 8)])
    # elastic layers: conv2 (2400 params, 1176 inputs), fc1 (48000 params, 400 inputs)
    expected_w = (2400 * 2 + 48_000 * 4) / (2400 + 48_000)
    expected_a = (1176 * 3 + 400 * 5) / (1176 + 400)
    assert costs.average_weight_bits(space, config) == pytest.approx(expected_w)
    assert costs.average_activation_bits(space, config) == pytest.approx(expected_a)
    with_pins = (150 * 8 + 2400 * 2 + 48_000 * 4 + 840 * 8) / (150 + 2400 + 48_000 + 840)
    assert costs.average_weight_bits(space, config, include_pinned=True) == pytest.approx(with_pins)


def test_compression_bitops_and_size(space: ElasticSpace) -> None:
    config = config_of([(8, 8), (2, 3), (4, 5), (8, 8)], TENSOR_ASYM)
    params = np.array([150, 2400, 48_000, 840])
    inputs = np.array([784, 1176, 400, 84])
    macs = np.array([117_600, 240_000, 48_000, 840])
    w = np.array([8, 2, 4, 8])
    a = np.array([8, 3, 5, 8])
    assert costs.weight_compression(space, config) == pytest.approx(
        32 * params.sum() / (params * w).sum()
    )
    assert costs.activation_compression(space, config) == pytest.approx(
        32 * inputs.sum() / (inputs * a).sum()
    )
    assert costs.bitops(space, config) == pytest.approx((macs * w * a).sum())
    # per-tensor asymmetric: one float32 scale and one 1-byte zero point per layer
    expected_size = np.ceil(params * w / 8).sum() + 4 * (4 + 1)
    assert costs.model_size_bytes(space, config) == pytest.approx(expected_size)
    per_channel = config_of([(8, 8), (2, 3), (4, 5), (8, 8)], CHANNEL_SYM)
    channels = np.array([6, 16, 120, 10])
    assert costs.model_size_bytes(space, per_channel) == pytest.approx(
        np.ceil(params * w / 8).sum() + 4 * channels.sum()
    )


def test_full_precision_layers_count_32_bits_in_compression() -> None:
    layers = (
        LayerSpec("a", "conv", 100, 1000, 10, 2, pinned=(32, 32)),
        LayerSpec("b", "conv", 100, 1000, 10, 2),
    )
    space = ElasticSpace(layers)
    config = space.uniform(4, 4)
    assert costs.average_weight_bits(space, config, include_pinned=True) == 4
    assert costs.weight_compression(space, config) == pytest.approx(64 / 36)
    assert costs.bitops(space, config) == 1000 * 32 * 32 + 1000 * 16


def test_batched_equals_single(space: ElasticSpace) -> None:
    batch = space.sample(0, 50, forms="per_layer")
    table = costs.cost_table(space, batch)
    for row, config in enumerate(list(batch)[:10]):
        assert table["w_bits"][row] == pytest.approx(costs.average_weight_bits(space, config))
        assert table["bitops"][row] == pytest.approx(costs.bitops(space, config))
        assert table["size_bytes"][row] == pytest.approx(costs.model_size_bytes(space, config))
    assert isinstance(costs.bitops(space, batch[0]), float)


def test_bits_range(space: ElasticSpace) -> None:
    ranges = costs.bits_range(space)
    assert ranges["w_bits"] == (2.0, 8.0)
    assert ranges["a_bits"] == (2.0, 8.0)
    assert costs.bits_range(space, include_pinned=True)["w_bits"][0] > 2.0


def test_paper_resnet18_weight_compression() -> None:
    """EQ-Net Table 2: 2-bit ResNet-18 with 8-bit first/last layers is 14.11× W-Comp."""
    from supernet import build_supernet

    supernet = build_supernet("resnet18", num_classes=1000, image_size=32)
    config = supernet.space.uniform(2, 2)
    assert costs.weight_compression(supernet.space, config) == pytest.approx(14.11, abs=0.01)
    assert costs.weight_compression(supernet.space, supernet.space.uniform(3, 3)) == (
        pytest.approx(9.93, abs=0.01)
    )
