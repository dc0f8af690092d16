"""Elastic Conv2d/Linear: full precision equals torch, quantized equals fake-quant references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.space import LayerChoice, QuantForm
from supernet.networks import layers as layers_module
from supernet.networks.layers import ElasticQuantConv2d, ElasticQuantLinear
from supernet.quantizers import QuantizerSpec, integer_conv, lsq_kernels


def test_full_precision_conv_equals_torch() -> None:
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, groups=1)
    layer = ElasticQuantConv2d.from_module(conv, QuantizerSpec())
    x = torch.randn(2, 3, 9, 9)
    assert torch.equal(layer(x), conv(x))
    assert torch.equal(layer.quantized_weight(), conv.weight)


def test_quantized_conv_uses_the_fake_quantized_operands() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    layer = ElasticQuantConv2d.from_module(conv, QuantizerSpec())
    x = torch.randn(2, 3, 6, 6).relu()
    layer.quantizer.calibrate(layer.weight, x, 0.0, float(x.max()))
    choice = LayerChoice(4, 3, QuantForm("channel", False, True))
    layer.set_choice(choice)
    params = layer.quantizer.quant_params(choice)
    assert params is not None and (params.a_qmin, params.a_qmax) == (0, 7)
    expected_weight = torch.fake_quantize_per_channel_affine(
        conv.weight, params.w_step, params.w_zero_point, 0, -8, 7
    )
    expected_input = torch.fake_quantize_per_tensor_affine(x, float(params.a_step), 0, 0, 7)
    assert torch.equal(layer.quantized_weight(), expected_weight)
    assert torch.allclose(
        layer(x), F.conv2d(expected_input, expected_weight, conv.bias, padding=1), atol=1e-6
    )


def test_linear_pinned_8_bit_and_choice_validation() -> None:
    linear = nn.Linear(6, 3)
    layer = ElasticQuantLinear.from_module(linear, QuantizerSpec().pinned(8, 8))
    layer.set_choice(LayerChoice(8, 8, QuantForm("tensor", True, False)))
    assert layer.choice == LayerChoice(8, 8, QuantForm("tensor", True, False))
    with pytest.raises(ValueError, match="bits w4/a4"):
        layer.set_choice(LayerChoice(4, 4))
    # a failed set_choice leaves the previous choice active
    assert layer.choice == LayerChoice(8, 8, QuantForm("tensor", True, False))
    with pytest.raises(ValueError, match="LayerChoice or None"):
        layer.set_choice((8, 8))  # type: ignore[arg-type]
    layer.set_choice(None)
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), linear(x))


def test_forward_reads_only() -> None:
    layer = ElasticQuantConv2d(3, 4, 3)
    layer.set_choice(LayerChoice(4, 4))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(2, 3, 5, 5)
    first = layer(x)
    second = layer(x)
    assert torch.equal(first, second)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_repr_names_the_choice() -> None:
    layer = ElasticQuantLinear(4, 2)
    layer.set_choice(LayerChoice(3, 5))
    assert "quantizer=lsq" in repr(layer) and "w_bits=3" in repr(layer)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("a_symmetric", [True, False])
@pytest.mark.parametrize("signed_input", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_constant_input_path_gives_the_same_output_and_gradients(
    a_symmetric: bool,
    signed_input: bool,
    padding_mode: str,
    dtype: torch.dtype,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An input without gradient (images) skips the backward-data convolution: the input
    quantizer's gradients come from its derivatives instead, through the weight gradient's
    convolution (zero padding) or forward convolutions of them (any other). float32 images
    get the derivatives from the one-pass kernel, float64 ones from torch's operations."""
    # both paths' forward convolutions in float (the other path's, on the integer grids,
    # differs by float32 rounding: tests/supernet/quantizers/test_integer_conv.py)
    monkeypatch.setattr(integer_conv, "ENABLED", False)
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=True, padding_mode=padding_mode)
    conv = conv.to(dtype)
    layer = ElasticQuantConv2d.from_module(conv, QuantizerSpec())
    x = (torch.randn(4, 3, 10, 10, dtype=torch.float64) * 2).to(dtype)
    kernel_calls = []
    kernel = lsq_kernels.input_directions
    monkeypatch.setattr(
        lsq_kernels, "input_directions", lambda *a: kernel_calls.append(1) or kernel(*a)
    )
    if not signed_input:
        x = x.relu()
    layer.quantizer.calibrate(layer.weight, x, float(x.min()), float(x.max()))
    with torch.no_grad():  # an offset with a nonzero zero point; some inputs clipped
        for offset in layer.quantizer.input_offsets.values():
            offset.fill_(-0.4)
        for log_step in layer.quantizer.input_log_steps.values():
            log_step.sub_(0.7)
    layer.set_choice(LayerChoice(4, 3, QuantForm("tensor", True, a_symmetric)))
    upstream = torch.randn(4, 6, 5, 5, dtype=torch.float64).to(dtype)
    calls = []
    directions = layer.quantizer.input_directions
    monkeypatch.setattr(
        layer.quantizer, "input_directions", lambda *a: calls.append(1) or directions(*a)
    )
    stacked = []
    direction_conv = layers_module.direction_conv2d
    monkeypatch.setattr(
        layers_module, "direction_conv2d", lambda *a: stacked.append(1) or direction_conv(*a)
    )
    results = []
    for constant in (True, False):
        layer.zero_grad(set_to_none=True)
        source = x if constant else x.clone().requires_grad_()
        out = layer(source)
        out.backward(upstream)
        grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads))
    (out_fast, grads_fast), (out_plain, grads_plain) = results
    assert len(calls) == 1  # the constant input took the direction path, the other did not
    assert len(stacked) == (padding_mode == "zeros")
    assert torch.equal(out_fast, out_plain)
    assert grads_fast.keys() == grads_plain.keys()
    assert len(grads_fast) == 4 + (not a_symmetric)  # weight, bias, w step, a step (+ offset)
    assert len(kernel_calls) == (dtype == torch.float32)
    for name, grad in grads_plain.items():
        if dtype == torch.float64:
            assert torch.allclose(grads_fast[name], grad, rtol=1e-10, atol=1e-12), name
        else:  # float32 summation orders differ
            atol = 1e-5 * (float(grad.abs().max()) or 1.0)
            assert torch.allclose(grads_fast[name], grad, rtol=1e-4, atol=atol), name
