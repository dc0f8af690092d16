"""The fused LSQ+ convolution against the separate quantizers and F.conv2d, value and gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from eqsearch.space import LayerChoice, QuantForm
from supernet.networks.dynamic import DynamicQuantConv2d
from supernet.networks.layers import ElasticQuantConv2d
from supernet.quantizers import QuantizerSpec, integer_conv
from supernet.quantizers import lsq_conv as lsq_conv_module
from supernet.quantizers.base import ConvGeometry, ElasticQuantizer
from supernet.quantizers.fake_quant import lsq_fake_quantize
from supernet.quantizers.lsq import LsqQuantizer
from supernet.quantizers.lsq_conv import LsqGrids, lsq_conv2d

# weight per channel, weight symmetric, input symmetric, depth-wise, channels-last, bias
CASES = list(itertools.product(*[(True, False)] * 6))


def _operands(
    dtype: torch.dtype, per_channel: bool, w_symmetric: bool, a_symmetric: bool, depthwise: bool
) -> dict[str, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(5)
    channels = 6
    in_per_group = 1 if depthwise else 4
    in_channels = channels if depthwise else in_per_group

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    weight_steps = channels if per_channel else 1
    return {
        "x": normal(3, in_channels, 9, 9) * 1.5,
        "weight": normal(channels, in_per_group, 3, 3) * 0.4,
        "bias": normal(channels),
        # steps small enough that some inputs and weights are clipped
        "input_log_step": torch.full((1,), -1.9, dtype=dtype),
        "input_offset": None if a_symmetric else torch.full((1,), -0.45, dtype=dtype),
        "weight_log_step": torch.log(0.05 + 0.05 * torch.rand(weight_steps, generator=generator))
        .to(dtype)
        .contiguous(),
        "weight_offset": None if w_symmetric else normal(weight_steps) * 0.05,
    }


def _composed(
    operands: dict[str, torch.Tensor | None], grids: LsqGrids, geometry: ConvGeometry
) -> torch.Tensor:
    x_hat = lsq_fake_quantize(
        operands["x"],  # type: ignore[arg-type]
        operands["input_log_step"].exp(),  # type: ignore[union-attr]
        operands["input_offset"],
        grids.input_qmin,
        grids.input_qmax,
        grids.input_grad_scale,
    )
    w_hat = lsq_fake_quantize(
        operands["weight"],  # type: ignore[arg-type]
        operands["weight_log_step"].exp(),  # type: ignore[union-attr]
        operands["weight_offset"],
        grids.weight_qmin,
        grids.weight_qmax,
        grids.weight_grad_scale,
    )
    if geometry.channels_last:
        x_hat = x_hat.to(memory_format=torch.channels_last)
        w_hat = w_hat.to(memory_format=torch.channels_last)
    return F.conv2d(
        x_hat,
        w_hat,
        operands["bias"],
        geometry.stride,
        geometry.padding,
        geometry.dilation,
        geometry.groups,
    )


def _layout(tensor: torch.Tensor) -> torch.memory_format:
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _value_and_gradients(
    compute, operands: dict[str, torch.Tensor | None], upstream: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    leaves = {
        name: value.clone().requires_grad_()
        for name, value in operands.items()
        if value is not None
    }
    inputs = {name: leaves.get(name) for name in operands}
    out = compute(inputs)
    out.backward(upstream)
    return out.detach(), {name: leaf.grad for name, leaf in leaves.items()}  # type: ignore[misc]


@pytest.mark.parametrize("integer", [False, True], ids=["float-conv", "integer-conv"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("per_channel", "w_symmetric", "a_symmetric", "depthwise", "channels_last", "bias"), CASES
)
def test_the_fused_convolution_equals_the_separate_quantizers(
    dtype,
    per_channel,
    w_symmetric,
    a_symmetric,
    depthwise,
    channels_last,
    bias,
    integer,
    integer_calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same output (exactly with the float convolution; up to float32 rounding where the
    forward convolves on the integer grids) and the same gradients."""
    monkeypatch.setattr(integer_conv, "ENABLED", integer)
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", 0)  # these are small
    operands = _operands(dtype, per_channel, w_symmetric, a_symmetric, depthwise)
    if not bias:
        operands["bias"] = None
    if channels_last:
        operands["x"] = operands["x"].contiguous(memory_format=torch.channels_last)  # type: ignore[union-attr]
    grids = LsqGrids(0, 15, 0.013, -8, 7, 0.021)
    geometry = ConvGeometry((2, 2), (1, 1), (1, 1), 6 if depthwise else 1, channels_last)
    upstream = torch.randn(3, 6, 5, 5, generator=torch.Generator().manual_seed(8), dtype=dtype)

    def fused(inputs):
        return lsq_conv2d(
            inputs["x"],
            inputs["weight"],
            inputs["bias"],
            inputs["input_log_step"],
            inputs["input_offset"],
            inputs["weight_log_step"],
            inputs["weight_offset"],
            grids,
            geometry,
        )

    out_fused, grads_fused = _value_and_gradients(fused, operands, upstream)
    out_plain, grads_plain = _value_and_gradients(
        lambda inputs: _composed(inputs, grids, geometry), operands, upstream
    )
    if integer and dtype == torch.float32 and w_symmetric and integer_conv.available():
        assert integer_calls  # symmetric weights: on the integer grids
    if integer_calls:
        assert out_fused.is_contiguous(memory_format=_layout(out_plain))
        scale = float(out_plain.abs().max())
        assert torch.allclose(out_fused, out_plain, rtol=0.0, atol=2e-6 * scale)
    else:
        assert torch.equal(out_fused, out_plain)
    assert grads_fused.keys() == grads_plain.keys()
    # only float summation order differs: Σ g·x_hat is summed over the weight
    tolerance = {"rtol": 1e-9, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 2e-4}
    for name, grad in grads_plain.items():
        scale = float(grad.abs().max()) or 1.0
        atol = tolerance.get("atol", 2e-5 * scale)
        assert torch.allclose(grads_fused[name], grad, rtol=tolerance["rtol"], atol=atol), name
    # the clip masks are not trivial in these cases
    assert grads_plain["x"].eq(0).any() and grads_plain["x"].ne(0).any()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_input_mask_takes_the_kernel_on_one_thread_and_torch_on_several(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32: one torch thread masks the input's gradient with the one-pass kernel, several
    with torch's ops; both give the composed path's gradients (an asymmetric input, so that
    the clipped sum is used too)."""
    from supernet.quantizers import lsq_kernels

    operands = _operands(torch.float32, True, True, False, False)
    grids = LsqGrids(0, 15, 0.013, -8, 7, 0.021)
    geometry = ConvGeometry((2, 2), (1, 1), (1, 1), 1, False)
    upstream = torch.randn(3, 6, 5, 5, generator=torch.Generator().manual_seed(8))
    kernel_calls = []
    mask_gradient = lsq_kernels.mask_gradient
    monkeypatch.setattr(
        lsq_kernels, "mask_gradient", lambda *a: kernel_calls.append(1) or mask_gradient(*a)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _, grads_fused = _value_and_gradients(
            lambda inputs: lsq_conv2d(*inputs.values(), grids, geometry), operands, upstream
        )
    finally:
        torch.set_num_threads(before)
    _, grads_plain = _value_and_gradients(
        lambda inputs: _composed(inputs, grids, geometry), operands, upstream
    )
    assert len(kernel_calls) == (1 if threads == 1 else 0)
    for name, grad in grads_plain.items():
        scale = float(grad.abs().max()) or 1.0
        assert torch.allclose(grads_fused[name], grad, rtol=2e-4, atol=2e-5 * scale), name
    assert grads_fused["input_offset"].abs().item() > 0  # the clipped sum is not trivial


def _calibrated_layer(layer: torch.nn.Module, x: torch.Tensor) -> None:
    layer.quantizer.calibrate(layer.weight, x, float(x.min()), float(x.max()))
    with torch.no_grad():
        for log_step in layer.quantizer.input_log_steps.values():
            log_step.sub_(0.5)  # some inputs clipped


@pytest.mark.parametrize(
    "form", [QuantForm("channel", True, True), QuantForm("tensor", False, False)]
)
def test_conv_layers_train_through_the_fused_function_with_the_same_gradients(
    form: QuantForm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conv layer whose input needs gradients takes the fused path; the gradients of every
    parameter equal those of the composed path (the base quantizer's)."""
    torch.manual_seed(2)
    plain = torch.nn.Conv2d(4, 8, 3, padding=1, stride=2, bias=True).double()
    static = ElasticQuantConv2d.from_module(plain, QuantizerSpec()).double()
    dynamic = DynamicQuantConv2d(8, 12, 5, stride=1, spec=QuantizerSpec()).double()
    dynamic.set_shape(4, 8, 3)  # a sliced shape: first channels, centre of the kernel
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    calls = []
    fused = lsq_conv_module.lsq_conv2d
    monkeypatch.setattr(
        "supernet.quantizers.lsq.lsq_conv2d", lambda *a: calls.append(1) or fused(*a)
    )
    for layer in (static, dynamic):
        _calibrated_layer(layer, x)
        layer.set_choice(LayerChoice(4, 4, form))
        results = []
        for fused_path in (True, False):
            if not fused_path:  # the composed default of every quantizer
                monkeypatch.setattr(
                    LsqQuantizer, "quantized_conv2d", ElasticQuantizer.quantized_conv2d
                )
            layer.zero_grad(set_to_none=True)
            source = x.clone().requires_grad_()
            out = layer(source)
            out.backward(torch.ones_like(out))
            grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
            results.append((out.detach(), source.grad, grads))
        monkeypatch.undo()
        monkeypatch.setattr(
            "supernet.quantizers.lsq.lsq_conv2d", lambda *a: calls.append(1) or fused(*a)
        )
        (out_fused, x_fused, grads_fused), (out_plain, x_plain, grads_plain) = results
        assert torch.equal(out_fused, out_plain)
        assert torch.allclose(x_fused, x_plain, rtol=1e-10, atol=1e-12)
        assert grads_fused.keys() == grads_plain.keys()
        assert len(grads_plain) >= 3  # weight, weight step, input step (+ bias, offsets)
        for name, grad in grads_plain.items():
            assert torch.allclose(grads_fused[name], grad, rtol=1e-9, atol=1e-11), name
    assert len(calls) == 2  # once per layer, only on the fused runs


def test_the_fused_convolution_trains_under_autocast() -> None:
    """Under autocast the convolution runs in the operands' dtype (float32), so the backward's
    convolution meets an output gradient of the same dtype; the values equal those without."""
    torch.manual_seed(3)
    layer = ElasticQuantConv2d.from_module(torch.nn.Conv2d(4, 6, 3, padding=1), QuantizerSpec())
    x = torch.randn(2, 4, 8, 8)
    _calibrated_layer(layer, x)
    layer.set_choice(LayerChoice(4, 4, QuantForm("channel", True, True)))
    results = []
    for enabled in (False, True):
        layer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=enabled):
            out = layer(x.clone().requires_grad_())
        out.float().sum().backward()
        results.append((out.dtype, layer.weight.grad.clone()))
    assert results[1][0] == torch.float32
    assert torch.equal(results[0][1], results[1][1])
