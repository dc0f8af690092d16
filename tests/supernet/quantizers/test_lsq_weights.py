"""Layers' weights quantized together against each layer quantizing its own: values, gradients."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.nn import functional as F

from eqsearch.space import LayerChoice, QuantForm, SubnetConfig
from supernet import build_supernet, init_quantizers
from supernet.networks.layers import ElasticQuantConv2d
from supernet.quantizers import integer_conv, lsq_weights
from supernet.quantizers.fake_quant import lsq_fake_quantize
from supernet.quantizers.lsq_weights import WeightEntry, batchable, quantize_weights

# (shape, qmin, qmax, asymmetric): a 3×3 conv, a 1×1 one, a depth-wise one, a linear weight
LAYERS = [
    ((6, 4, 3, 3), -8, 7, False),
    ((8, 6, 1, 1), -2, 1, True),
    ((5, 1, 3, 3), -128, 127, True),
    ((3, 7), -4, 3, False),
]


def _entries(generator: torch.Generator) -> list[WeightEntry]:
    entries = []
    for shape, qmin, qmax, asymmetric in LAYERS:
        channels = shape[0]
        weight = (torch.randn(*shape, generator=generator) * 0.3).requires_grad_()
        # steps small enough that some weights are clipped, one clamped to the minimum step
        log_step = torch.log(0.02 + 0.05 * torch.rand(channels, generator=generator))
        log_step[-1] = -40.0
        offset = torch.randn(channels, generator=generator) * 0.05 if asymmetric else None
        grad_scale = 1.0 / (weight.numel() // channels * qmax) ** 0.5
        entries.append(
            WeightEntry(
                weight,
                log_step.requires_grad_(),
                None if offset is None else offset.requires_grad_(),
                qmin,
                qmax,
                grad_scale,
            )
        )
    return entries


def _leaves(entries: list[WeightEntry]) -> list[torch.Tensor]:
    leaves = []
    for entry in entries:
        leaves += [entry.weight, entry.log_step]
        if entry.offset is not None:
            leaves.append(entry.offset)
    return leaves


def test_weights_quantized_together_equal_each_on_its_own() -> None:
    generator = torch.Generator().manual_seed(3)
    entries = _entries(generator)
    assert all(batchable(entry) for entry in entries)
    together, _ = quantize_weights(entries)
    alone = [
        lsq_fake_quantize(
            entry.weight,
            entry.log_step.exp(),
            entry.offset,
            entry.qmin,
            entry.qmax,
            entry.grad_scale,
        )
        for entry in entries
    ]
    upstream = [torch.randn(entry.weight.shape, generator=generator) for entry in entries]
    gradients = []
    for outputs in (together, alone):
        loss = sum((out * grad).sum() for out, grad in zip(outputs, upstream, strict=True))
        gradients.append(torch.autograd.grad(loss, _leaves(entries)))
    for ours, theirs in zip(together, alone, strict=True):
        assert ours.shape == theirs.shape
        assert torch.equal(ours, theirs)  # the same float32 operations
    assert any((out == 0).any() for out in together)
    for ours, theirs in zip(*gradients, strict=True):
        assert ours.shape == theirs.shape
        # the masks are equal; the step and offset sums are float64 against float32
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    weight_gradients = gradients[0][0], gradients[1][0]
    assert torch.equal(*weight_gradients)
    assert (weight_gradients[0] == 0).any()  # some weights clipped


def test_only_dense_float32_per_channel_entries_are_batchable() -> None:
    entry = _entries(torch.Generator().manual_seed(0))[0]
    assert batchable(entry)
    assert not batchable(entry._replace(weight=entry.weight.double()))
    assert not batchable(entry._replace(weight=entry.weight.transpose(2, 3)))
    assert not batchable(entry._replace(log_step=entry.log_step[:1]))  # per tensor
    assert not batchable(entry._replace(offset=torch.zeros(2)))


def _config(supernet: torch.nn.Module) -> SubnetConfig:
    """A mixed config: per-channel forms of both symmetries at several bit widths, and one
    per-tensor layer (which quantizes its own weight)."""
    forms = [
        QuantForm("channel", True, True),
        QuantForm("channel", False, False),
        QuantForm("channel", True, False),
    ]
    choices = [
        LayerChoice(*(layer.pinned or (2 + index % 5, 4 + index % 3)), forms[index % 3])
        for index, layer in enumerate(supernet.space.layers)
    ]
    choices[3] = LayerChoice(4, 4, QuantForm("tensor", False, True))
    return SubnetConfig(tuple(choices))


@pytest.mark.parametrize("integer", [False, True], ids=["float-conv", "integer-conv"])
def test_a_supernet_training_step_quantizes_its_weights_together_with_the_same_gradients(
    integer: bool, integer_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with every convolution on the integer grids where this CPU allows it (the shared
    node's levels against each layer's own)."""
    monkeypatch.setattr(integer_conv, "ENABLED", integer)
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", 0)
    torch.manual_seed(0)
    supernet = build_supernet("resnet20", num_classes=10)
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 3, 5, 9])
    init_quantizers(supernet, images)
    supernet.set_subnet(_config(supernet))
    supernet.train()
    calls: list[int] = []
    real = lsq_weights.quantize_weights
    monkeypatch.setattr(
        "supernet.networks.layers.quantize_weights",
        lambda entries: calls.append(len(entries)) or real(entries),
    )
    results = []
    for together in (True, False):
        if not together:
            monkeypatch.setattr(
                "supernet.networks.elastic.weights_quantized_together",
                lambda layers: contextlib.nullcontext(),
            )
        supernet.zero_grad(set_to_none=True)
        logits = supernet(images)
        F.cross_entropy(logits, labels).backward()
        grads = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
        results.append((logits.detach(), grads))
    layers = sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in supernet.modules())
    assert calls == [layers - 1]  # once, every layer but the per-tensor one
    if integer and integer_conv.available():
        # the symmetric-weight conv layers but the first (images), both ways
        assert len(integer_calls) == 2 * sum(
            isinstance(layer, ElasticQuantConv2d) and layer.choice.form.w_symmetric
            for layer in list(supernet.elastic_layers().values())[1:]
        )
    else:
        assert integer_calls == []
    (logits_together, grads_together), (logits_alone, grads_alone) = results
    assert torch.equal(logits_together, logits_alone)
    assert grads_together.keys() == grads_alone.keys()
    for name, grad in grads_alone.items():
        assert torch.allclose(grads_together[name], grad, rtol=1e-4, atol=1e-6), name
    elastic = supernet.elastic_layers().values()
    assert all(layer.active.quantized_weight is None for layer in elastic)  # released
    with torch.no_grad():
        supernet(images)
    supernet.set_subnet(None)
    supernet(images)
    assert calls == [layers - 1]  # not without gradients, not in full precision
