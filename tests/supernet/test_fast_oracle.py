"""The fast measuring path scores every subnet as the plain forward passes do."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from supernet import build_supernet
from supernet.evaluation.evaluate import EvaluationSet, uniform_table
from supernet.evaluation.inference import LayerOutputCache, fast_inference, frozen_weights
from supernet.evaluation.oracle import SupernetOracle, subnet_accuracy
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from tests.supernet.oracle_fixture import BATCH_SIZE, FORMS, SUBNETS, fixed_setup, subnet

STORED_SCORES = {
    "FP32": 100.0,
    "W8A8 cs": 95.0,
    "W4A4 ca": 51.5,
    "W3A3 ts": 57.0,
    "W2A2 cs": 26.0,
    "W2A2 ta": 34.0,
    "mixed 1": 60.0,
    "mixed 2": 34.0,
    "per-layer forms": 34.0,
}
"""Top-1 % of :mod:`tests.supernet.oracle_fixture`'s subnets on its 200 images, measured by the
plain path (``subnet_accuracy`` of commit d063924, before the fast path existed)."""


@pytest.fixture(scope="module")
def fixed():
    return fixed_setup()


def _config(name: str):
    return None if name == "FP32" else subnet(name)


def test_the_fast_path_reproduces_the_stored_plain_scores(fixed) -> None:
    supernet, images, labels, calibration = fixed
    oracle = SupernetOracle(supernet, images, labels, calibration, batch_size=BATCH_SIZE)
    names = list(SUBNETS)
    measured = oracle.evaluate([subnet(name) for name in names])
    fp = subnet_accuracy(supernet, None, images, labels, calibration, batch_size=BATCH_SIZE)
    # One image is 0.5 points: another CPU's convolution kernels may sum in another order and
    # move a value across a rounding tie; on one machine the two paths agree bit for bit
    # (test_fast_and_plain_paths_compute_the_same_tensors).
    assert fp == pytest.approx(STORED_SCORES["FP32"], abs=0.5)
    for name, value in zip(names, measured, strict=True):
        assert value == pytest.approx(STORED_SCORES[name], abs=0.5), name


def _logits_and_statistics(supernet, config, images, calibration, fast):
    with (
        preserved_bn_state(supernet),
        supernet.using(config),
        torch.inference_mode(),
        fast_inference(supernet) if fast else nullcontext(),
    ):
        calibrate_bn(supernet, calibration, batch_size=BATCH_SIZE)
        statistics = [
            tensor.clone()
            for module in supernet.modules()
            if isinstance(module, torch.nn.BatchNorm2d)
            for tensor in (module.running_mean, module.running_var)
        ]
        supernet.eval()
        logits = torch.cat([supernet(batch) for batch in images.split(BATCH_SIZE)])
    supernet.train()
    return logits, statistics


@pytest.mark.parametrize("name", ["W8A8 cs", "W4A4 ca", "W2A2 ta", "per-layer forms"])
def test_fast_and_plain_paths_compute_the_same_tensors(fixed, name) -> None:
    supernet, images, labels, calibration = fixed
    config = subnet(name)
    fast_logits, fast_statistics = _logits_and_statistics(
        supernet, config, images, calibration, fast=True
    )
    plain_logits, plain_statistics = _logits_and_statistics(
        supernet, config, images, calibration, fast=False
    )
    assert torch.equal(fast_logits, plain_logits)
    for fast, plain in zip(fast_statistics, plain_statistics, strict=True):
        assert torch.equal(fast, plain)
    slow = subnet_accuracy(
        supernet, config, images, labels, calibration, batch_size=BATCH_SIZE, fast=False
    )
    fast_score = subnet_accuracy(supernet, config, images, labels, calibration, batch_size=64)
    assert slow == fast_score


def test_weights_are_quantized_once_per_subnet_not_per_batch(fixed, monkeypatch) -> None:
    supernet, images, labels, calibration = fixed
    calls: list[int] = []
    for layer in supernet.elastic_layers().values():
        original = layer.quantizer.quantize_weight

        def counting(weight, handle, original=original):
            calls.append(1)
            return original(weight, handle)

        monkeypatch.setattr(layer.quantizer, "quantize_weight", counting)
    config = subnet("mixed 1")
    subnet_accuracy(supernet, config, images, labels, calibration, batch_size=BATCH_SIZE)
    assert len(calls) == 5  # five layers; 3 calibration and 4 scoring batches
    calls.clear()
    subnet_accuracy(
        supernet, config, images, labels, calibration, batch_size=BATCH_SIZE, fast=False
    )
    assert len(calls) == 5 * (3 + 4)


def test_frozen_operands_are_not_used_for_another_subnet_or_a_changed_weight(fixed) -> None:
    supernet, images, _, _ = fixed
    batch = images[:16]
    first, second = subnet("W8A8 cs"), subnet("W2A2 cs")
    supernet.eval()
    with torch.no_grad():
        with supernet.using(second):
            expected_second = supernet(batch)
        with supernet.using(first):
            expected_first = supernet(batch)
            with frozen_weights(supernet):
                assert torch.equal(supernet(batch), expected_first)
                supernet.set_subnet(second)  # inside: the frozen first-subnet weights are stale
                assert torch.equal(supernet(batch), expected_second)
                supernet.set_subnet(first)
                layer = next(iter(supernet.elastic_layers().values()))
                layer.weight.mul_(2.0)  # an in-place update: the frozen weight is stale
                changed = supernet(batch)
                layer.weight.div_(2.0)
            assert all(layer.active.frozen is None for layer in supernet.elastic_layers().values())
            with supernet.using(first):
                layer.weight.mul_(2.0)
                assert torch.equal(supernet(batch), changed)
                layer.weight.div_(2.0)
    supernet.train()
    assert not torch.equal(changed, expected_first)


def test_the_fast_path_serves_n2uq_supernets_as_their_plain_path() -> None:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, quantizer="n2uq", w_bits=(2, 4), a_bits=(2, 4)
    )
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(40, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (40,), generator=generator)
    for config in (supernet.space.smallest(), supernet.space.largest()):
        fast = subnet_accuracy(supernet, config, images, labels, images[:20], batch_size=16)
        plain = subnet_accuracy(
            supernet, config, images, labels, images[:20], batch_size=16, fast=False
        )
        assert fast == plain


def test_with_autograd_on_frozen_operands_are_not_used_and_gradients_reach_the_weights(
    fixed,
) -> None:
    supernet, images, _, _ = fixed
    layer = next(iter(supernet.elastic_layers().values()))
    supernet.eval()
    with supernet.using(subnet("W4A4 ca")):
        supernet(images[:8]).sum().backward()
        expected = layer.weight.grad.clone()
        layer.weight.grad = None
        with frozen_weights(supernet):
            supernet(images[:8]).sum().backward()
    supernet.train()
    assert layer.weight.grad is not None and torch.equal(layer.weight.grad, expected)
    supernet.zero_grad(set_to_none=True)


def test_the_uniform_table_scores_every_entry_as_subnet_accuracy(fixed) -> None:
    supernet, images, labels, calibration = fixed
    evaluation = EvaluationSet.from_tensors(images, labels, calibration, "holdout")
    forms = [FORMS["cs"], FORMS["ta"]]
    ticks: list[tuple[int, int]] = []
    table = uniform_table(
        supernet, evaluation, bits=(8, 2), forms=forms, progress=lambda *tick: ticks.append(tick)
    )
    for bits in (8, 2):
        for form in forms:
            config = supernet.space.uniform(bits, bits, form)
            expected = subnet_accuracy(supernet, config, images, labels, calibration)
            assert table.loc[f"W{bits}/A{bits}", str(form)] == expected
    full_precision = subnet_accuracy(supernet, None, images, labels, calibration)
    assert table.loc["FP32"].tolist() == [full_precision, full_precision]
    assert ticks[-1] == (5, 5) and len(ticks) == 5


def test_the_layer_cache_serves_the_first_layer_to_subnets_that_share_its_choice(fixed) -> None:
    supernet, images, labels, calibration = fixed
    cache = LayerOutputCache([images, calibration])
    names = ["W8A8 cs", "W2A2 cs", "mixed 1", "W4A4 ca", "mixed 2"]  # two first-layer choices
    for name in names:
        config = subnet(name)
        plain = subnet_accuracy(
            supernet, config, images, labels, calibration, batch_size=BATCH_SIZE, fast=False
        )
        cached = subnet_accuracy(
            supernet, config, images, labels, calibration, batch_size=BATCH_SIZE, layer_cache=cache
        )
        assert cached == plain == pytest.approx(STORED_SCORES[name], abs=0.5), name
    # 7 batches (3 calibration, 4 scoring) per subnet; the first of each form computes them
    assert cache.hits == 7 * (len(names) - 2)
    for layer in supernet.elastic_layers().values():
        assert "forward" not in vars(layer)  # the layers' own forward again


def test_the_layer_cache_serves_no_stale_or_mutated_output(fixed) -> None:
    supernet, images, labels, calibration = fixed
    images, calibration = images.clone(), calibration.clone()
    cache = LayerOutputCache([images, calibration])
    config = subnet("W4A4 ca")
    layer = next(iter(supernet.elastic_layers().values()))
    supernet.eval()
    with torch.inference_mode(), supernet.using(config):
        batch = images[:BATCH_SIZE]
        first = cache.forward(layer, batch)
        first.mul_(0.0)  # an in-place op after the layer (a ReLU) changes only its copy
        assert torch.equal(cache.forward(layer, batch), layer(batch)) and cache.hits == 1
        assert not torch.equal(cache.forward(layer, images[1 : BATCH_SIZE + 1]), layer(batch))
        copy = batch.clone()  # not a slice of the images: computed, never stored
        assert torch.equal(cache.forward(layer, copy), layer(batch)) and cache.hits == 1
    supernet.train()

    def both_paths() -> tuple[float, float]:
        arguments = (supernet, config, images, labels, calibration)
        return (
            subnet_accuracy(*arguments, batch_size=BATCH_SIZE, layer_cache=cache),
            subnet_accuracy(*arguments, batch_size=BATCH_SIZE, fast=False),
        )

    before, _ = both_paths()
    with torch.no_grad():
        layer.weight.mul_(0.25)  # an in-place update of the first layer (an optimizer step)
    changed, plain = both_paths()
    assert changed == plain != before
    with torch.no_grad():
        layer.weight.mul_(4.0)
        images.mul_(0.5)  # the images themselves change: nothing stored is used
    halved, plain = both_paths()
    assert halved == plain
    with torch.no_grad():
        images.mul_(2.0)


def test_images_made_in_inference_mode_are_scored_without_the_layer_cache(fixed) -> None:
    supernet, images, labels, calibration = fixed
    with torch.inference_mode():
        frozen_images, frozen_calibration = images.clone(), calibration.clone()
    oracle = SupernetOracle(
        supernet, frozen_images, labels, frozen_calibration, batch_size=BATCH_SIZE
    )
    names = ["W8A8 cs", "W2A2 cs"]
    measured = oracle.evaluate([subnet(name) for name in names])
    assert measured.tolist() == pytest.approx([STORED_SCORES[name] for name in names], abs=0.5)
