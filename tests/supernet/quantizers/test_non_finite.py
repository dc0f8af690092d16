"""NaN step sizes and infinite pixels: gradients NaN where torch's reference ops give NaN."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.space import LayerChoice, QuantForm
from supernet.networks.layers import ElasticQuantConv2d
from supernet.quantizers import QuantizerSpec, integer_conv, lsq_kernels, lsq_row_kernels
from supernet.quantizers.base import ConvGeometry
from supernet.quantizers.fake_quant import lsq_fake_quantize
from supernet.quantizers.lsq_conv import LsqGrids, lsq_conv2d
from supernet.quantizers.lsq_weights import WeightEntry, batchable, quantize_weights
from supernet.runtime import device_path

NAN = float("nan")
PATHS = ("kernels", "torch", "device")
"""The CPU kernels (float32), torch's ops on the host path, and the device path's ops."""


@contextmanager
def _path(path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if path == "torch":
        for module, name in (
            (lsq_kernels, "servable"),
            (lsq_row_kernels, "per_channel_servable"),
            (lsq_kernels, "mask_servable"),
        ):
            monkeypatch.setattr(module, name, lambda *args: False)
    with device_path() if path == "device" else nullcontext():
        yield


def _reference(
    x: torch.Tensor, step: torch.Tensor, offset: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """LSQ+ as torch ops, differentiated by autograd: ``round(clamp((x − β)/s))·s + β``."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    s = step.view(shape) if step.numel() > 1 else step
    b = offset.view(shape) if offset.numel() > 1 else offset
    clipped = torch.clamp((x - b) / s, qmin, qmax)
    return (clipped + (torch.round(clipped) - clipped).detach()) * s + b


def _gradients(function, tensors: dict[str, torch.Tensor], upstream: torch.Tensor) -> dict:
    leaves = {name: value.clone().requires_grad_() for name, value in tensors.items()}
    function(**leaves).backward(upstream)
    return {name: leaf.grad for name, leaf in leaves.items()}


def _assert_same(ours: dict, reference: dict, nan: dict | None = None) -> None:
    """NaN exactly where the reference has NaN (or where ``nan`` says: a superset of the
    reference's), equal values elsewhere."""
    for name, grad in reference.items():
        expected = grad.isnan() if nan is None else nan[name]
        assert not (grad.isnan() & ~expected).any(), name
        assert torch.equal(ours[name].isnan(), expected), name
        assert torch.allclose(ours[name][~expected], grad[~expected], rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize(
    ("path", "per_channel", "symmetric", "nan_in"),
    list(itertools.product(PATHS, (False, True), (True, False), ("step", "offset"))),
)
def test_a_nan_step_or_offset_makes_its_gradients_nan_as_torch(
    path: str, per_channel: bool, symmetric: bool, nan_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input, step and offset gradients of the tensor (or channel) whose step is NaN are
    NaN, as autograd of the formula gives; the other channels keep their gradients. A NaN
    offset makes them NaN too (the formula's clamp mask, false for NaN, gives the input 0
    and the offset Σ g there: NaN in, NaN out instead)."""
    if symmetric and nan_in == "offset":
        return  # a symmetric form has no offset
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 5, 5, generator=generator)
    channels = 4 if per_channel else 1
    step = torch.full((channels,), 0.1)
    offset = torch.zeros(channels) if symmetric else torch.full((channels,), -0.3)
    (step if nan_in == "step" else offset)[0] = NAN
    upstream = torch.randn(x.shape, generator=generator)
    tensors = {"x": x, "step": step} | ({} if symmetric else {"offset": offset})

    def ours(x, step, offset=None):
        return lsq_fake_quantize(x, step, offset, -8, 7, 1.0)

    with _path(path, monkeypatch):
        gradients = _gradients(ours, tensors, upstream)
    reference = _gradients(
        lambda x, step, offset=offset: _reference(x, step, offset, -8, 7), tensors, upstream
    )
    first = torch.zeros(channels, dtype=torch.bool)
    first[0] = True
    nan = {"x": first.view(-1, 1, 1, 1).expand(x.shape) if per_channel else ~x.isnan()}
    nan |= {"step": first, "offset": first}
    _assert_same(gradients, reference, nan)


@pytest.mark.parametrize("integer", [False, True], ids=["float-conv", "integer-conv"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nan_step", ["input", "weight"])
def test_the_fused_convolution_propagates_a_nan_step(
    nan_step: str, path: str, integer: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused LSQ+ convolution (input, weight and convolution in one node) against the
    reference ops and F.conv2d: NaN gradients where they have them (a per-channel weight)."""
    monkeypatch.setattr(integer_conv, "ENABLED", integer)
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", 0)
    generator = torch.Generator().manual_seed(5)
    tensors = {
        "x": torch.randn(3, 4, 9, 9, generator=generator) * 1.5,
        "weight": torch.randn(6, 4, 3, 3, generator=generator) * 0.4,
        "input_log_step": torch.full((1,), -1.9),
        "weight_log_step": torch.log(0.05 + 0.05 * torch.rand(6, generator=generator)),
    }
    tensors[f"{nan_step}_log_step"][0] = NAN
    grids = LsqGrids(0, 15, 0.013, -8, 7, 0.021)
    geometry = ConvGeometry((2, 2), (1, 1), (1, 1), 1, False)
    upstream = torch.randn(3, 6, 5, 5, generator=generator)

    def fused(x, weight, input_log_step, weight_log_step):
        return lsq_conv2d(
            x, weight, None, input_log_step, None, weight_log_step, None, grids, geometry
        )

    def reference(x, weight, input_log_step, weight_log_step):
        zero = torch.zeros(1)
        x_hat = _reference(x, input_log_step.exp(), zero, 0, 15)
        w_hat = _reference(weight, weight_log_step.exp(), zero.expand(6), -8, 7)
        return F.conv2d(x_hat, w_hat, None, 2, 1)

    with _path(path, monkeypatch):
        gradients = _gradients(fused, tensors, upstream)
    expected = _gradients(reference, tensors, upstream)
    # the reference's LSQ gradient scales are 1: compare the step gradients without them
    gradients["input_log_step"] = gradients["input_log_step"] / grids.input_grad_scale
    gradients["weight_log_step"] = gradients["weight_log_step"] / grids.weight_grad_scale
    _assert_same(gradients, expected)
    assert gradients["x"].isnan().any() and gradients["weight"].isnan().any()


@pytest.mark.parametrize("path", PATHS)
def test_an_infinite_pixel_gives_the_first_layer_a_nan_step_gradient(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images need no gradient, so the first layer takes the input quantizer's derivatives
    (the CPU kernel on float32 images); a +inf pixel makes the input step's gradient NaN, as
    the reference ops give (the pixel itself clamps to the top level: the output is finite)."""
    monkeypatch.setattr(integer_conv, "ENABLED", False)
    torch.manual_seed(1)
    layer = ElasticQuantConv2d.from_module(nn.Conv2d(3, 6, 3, padding=1), QuantizerSpec())
    images = torch.rand(2, 3, 8, 8)
    layer.quantizer.calibrate(layer.weight, images, 0.0, 1.0)
    layer.set_choice(LayerChoice(8, 8, QuantForm("tensor", True, True)))
    images[1, 2, 3, 4] = float("inf")
    calls: list[int] = []
    directions = lsq_kernels.input_directions
    monkeypatch.setattr(
        lsq_kernels, "input_directions", lambda *a: calls.append(1) or directions(*a)
    )
    with _path(path, monkeypatch):
        out = layer(images)
        out.sum().backward()
    assert len(calls) == (path == "kernels")
    assert torch.isfinite(out).all()
    log_step = layer.active.handle.a_log_step
    assert log_step.grad is not None and log_step.grad.isnan().all()
    # the reference: autograd through the formula, the same step (no gradient scale needed)
    step = log_step.detach().exp().requires_grad_()
    params = layer.quantizer.quant_params(layer.active.choice)
    assert params is not None
    x_hat = _reference(images, step, torch.zeros(1), params.a_qmin, params.a_qmax)
    F.conv2d(x_hat, layer.quantized_weight().detach(), layer.bias, padding=1).sum().backward()
    assert step.grad is not None and step.grad.isnan().all()


def test_weights_quantized_together_propagate_a_nan_step() -> None:
    """The shared weight node (every layer's per-channel weights in one kernel call): a NaN
    log step makes its channel's weight and step gradients NaN, as the reference ops; the
    other channels and layers keep theirs."""
    generator = torch.Generator().manual_seed(6)
    shapes = [(6, 4, 3, 3), (5, 6, 1, 1)]
    weights = [torch.randn(*shape, generator=generator) * 0.3 for shape in shapes]
    log_steps = [torch.log(0.02 + 0.05 * torch.rand(s[0], generator=generator)) for s in shapes]
    log_steps[0][2] = NAN
    upstream = [torch.randn(*shape, generator=generator) for shape in shapes]
    assert all(
        batchable(WeightEntry(w, s, None, -8, 7, 1.0))
        for w, s in zip(weights, log_steps, strict=True)
    )

    def run(together: bool) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in weights + log_steps]
        ws, ss = leaves[:2], leaves[2:]
        if together:
            entries = [WeightEntry(w, s, None, -8, 7, 1.0) for w, s in zip(ws, ss, strict=True)]
            outs = quantize_weights(entries).weights
        else:
            outs = tuple(
                _reference(w, s.exp(), torch.zeros_like(s), -8, 7)
                for w, s in zip(ws, ss, strict=True)
            )
        torch.autograd.backward(outs, upstream)
        return [leaf.grad for leaf in leaves]

    ours, reference = run(True), run(False)
    for name, mine, theirs in zip(("w0", "w1", "s0", "s1"), ours, reference, strict=True):
        _assert_same({name: mine}, {name: theirs})
    assert ours[0][2].isnan().all() and not ours[0][[0, 1, 3, 4, 5]].isnan().any()
