"""init_quantizers: unaliased seeded samples of every layer's inputs, steps near the optimum."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from eqsearch.space import Granularity
from supernet import build_supernet, init_quantizers
from supernet.quantizers import QuantizerSpec, build_quantizer
from supernet.quantizers.clipping import integer_grid, search_step_sizes, weighted_sample
from supernet.quantizers.fake_quant import lsq_fake_quantize

# 64 × 8 × 32 × 32 inputs: 2^19 values, so a stride of numel / 2^14 is a multiple of the width
SHAPE = (64, 8, 32, 32)


def _supernet() -> Any:
    torch.manual_seed(0)
    return build_supernet("tiny_convnet", num_classes=4, in_channels=8, image_size=32)


def _images(generator: torch.Generator) -> torch.Tensor:
    images = torch.randn(SHAPE, generator=generator)
    images[..., 0] = 0.0  # a zero border column, as padded or vignetted images have
    return images


def test_the_sample_covers_every_spatial_position(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _supernet()
    height, width = SHAPE[2:]
    # each value names its (row, column)
    position = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    images = position.expand(SHAPE).contiguous()
    first = next(iter(net.elastic_layers().values()))
    seen: list[torch.Tensor] = []
    original = first.quantizer.calibrate

    def spy(weight: torch.Tensor, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        seen.append(inputs)
        original(weight, inputs, *args, **kwargs)

    monkeypatch.setattr(first.quantizer, "calibrate", spy)
    init_quantizers(net, images)
    (sample,) = seen
    assert set(sample.long().reshape(-1).tolist()) == set(range(height * width))
    assert sample.numel() == 2**14 + 2 * 2**10  # random values and both exact tails


def test_activation_steps_land_near_the_all_values_search() -> None:
    net = _supernet()
    images = _images(torch.Generator().manual_seed(1))
    layers = net.elastic_layers()
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        layer.register_forward_pre_hook(
            lambda module, args, name=name: inputs.setdefault(name, args[0].detach().clone())
        )
        for name, layer in layers.items()
    ]
    init_quantizers(net, images)
    for handle in handles:
        handle.remove()
    checked = 0
    for name, layer in layers.items():
        values = inputs[name].reshape(1, -1)
        if values.numel() <= 2**15:
            continue  # sampled whole
        signed = bool(values.min() < 0)
        for bits in {4, 8} & set(layer.quantizer.input_bits):
            (best,), _ = search_step_sizes(values, [bits], signed=signed, symmetric=True)
            step = layer.quantizer.input_step(bits, True)
            _assert_near_optimum(values, step, best, integer_grid(bits, signed), (name, bits))
        checked += 1
    assert checked == 3  # the three convs see 2^19, 2^19 and 2^18 values


def _assert_near_optimum(
    values: torch.Tensor, step: torch.Tensor, best: torch.Tensor, grid: tuple[int, int], what: Any
) -> None:
    # the fine search grid is ~5 % apart: within one candidate of the all-values optimum,
    # and about as good
    assert float(step) == pytest.approx(float(best), rel=0.06), what

    def error(s: torch.Tensor) -> float:
        quantized = lsq_fake_quantize(values, s.reshape(1), None, *grid)
        return float((quantized - values).abs().pow(2.5).mean())

    assert error(step) <= error(best) * 1.03, what


def test_per_tensor_weight_steps_land_near_the_all_values_search() -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(64, 64, 3, 3, generator=generator) * 0.05
    weight[..., 0] *= 0.1  # the kernel's first column small: a strided sample sees only it
    spec = QuantizerSpec(granularities=("tensor",), w_symmetries=(True,), a_symmetries=(True,))
    quantizer = build_quantizer(weight, spec)
    quantizer.calibrate(weight, torch.rand(100), 0.0, 1.0)
    values = weight.reshape(1, -1)
    for bits in (2, 4, 8):
        (best,), _ = search_step_sizes(values, [bits], signed=True, symmetric=True)
        step = quantizer.weight_step(bits, Granularity.TENSOR, True)
        _assert_near_optimum(values, step, best, integer_grid(bits, True), bits)


def test_samples_are_seeded() -> None:
    images = _images(torch.Generator().manual_seed(2))[:16]
    states = []
    for _ in range(2):
        net = _supernet()
        init_quantizers(net, images, seed=5)
        states.append(net.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
    rows = torch.randn(2, 10_000)
    first, second, other = (
        weighted_sample(rows, 100, torch.Generator().manual_seed(seed))[0] for seed in (0, 0, 1)
    )
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_weighted_sample_keeps_tails_and_estimates_means() -> None:
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(3, 40, generator=generator)
    values, weights = weighted_sample(small, 32, generator, tail=4)
    assert torch.equal(values, small) and torch.equal(weights, torch.ones_like(small))
    rows = torch.randn(3, 100_000, generator=generator)
    rows[:, :30] *= 20  # outliers that a plain random sample of 2000 would mostly miss
    values, weights = weighted_sample(rows, 2000, generator, tail=50)
    assert values.shape == weights.shape == (3, 2100)
    # the 50 largest and smallest of every row exactly, with weight 1
    assert torch.equal(values[:, :50], rows.topk(50, dim=1).values)
    assert torch.equal(values[:, 50:100], rows.topk(50, dim=1, largest=False).values)
    assert (weights[:, :100] == 1).all()
    # weights sum to the row's count; weighted means estimate the row's means
    assert torch.allclose(weights.sum(1), torch.full((3,), 100_000.0))
    for power in (2.0, 2.5, 4.0):
        estimate = (values.abs() ** power * weights).sum(1) / weights.sum(1)
        assert torch.allclose(estimate, (rows.abs() ** power).mean(1), rtol=0.03)
    # a second pass over a weighted sample keeps the total weight
    again, again_weights = weighted_sample(values, 500, generator, weights=weights, tail=20)
    assert torch.allclose(again_weights.sum(1), torch.full((3,), 100_000.0))
    assert torch.equal(again.max(1).values, rows.max(1).values)
