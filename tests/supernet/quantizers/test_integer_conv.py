"""The forward's convolution on the integer grids: exact sums, the probe, the fused node."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from supernet.quantizers import integer_conv, lsq_kernels
from supernet.quantizers.base import ConvGeometry
from supernet.quantizers.lsq_conv import LsqGrids, lsq_conv2d
from supernet.quantizers.lsq_weights import WeightEntry, quantize_weights


@pytest.fixture(autouse=True)
def _small_convolutions_take_the_integer_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", 0)


needs_integer_conv = pytest.mark.skipif(
    not integer_conv.available(),
    reason="this CPU or torch build has no exact int8 convolution (the float path is used)",
)


def _operands(
    generator: torch.Generator, low: int, high: int, w_bits: int, channels: int, groups: int
) -> tuple[torch.Tensor, integer_conv.WeightLevels, float]:
    # a float32 step, as the library passes one
    step = float(np.float32(0.0625 + 0.01 * float(torch.rand(1, generator=generator))))
    levels = torch.randint(0, high - low + 1, (3, channels, 7, 7), generator=generator)
    qmax = 2 ** (w_bits - 1) - 1
    weight_levels = torch.randint(-qmax - 1, qmax + 1, (8, channels // groups, 3, 3))
    steps = 0.01 + 0.02 * torch.rand(8, generator=generator)
    return (
        levels.to(torch.uint8),
        integer_conv.WeightLevels(steps, weight_levels.to(torch.int8)),
        step,
    )


@needs_integer_conv
@pytest.mark.parametrize(
    ("grid", "w_bits", "stride", "padding", "dilation", "groups", "channels_last", "bias"),
    [
        ((-8, 7), 4, 1, 1, 1, 1, False, False),
        ((0, 255), 8, 1, 1, 1, 1, False, True),  # the 8-bit extremes
        ((-128, 127), 8, 2, 0, 1, 1, True, True),
        ((-2, 1), 2, 1, 2, 2, 1, False, False),
        ((0, 15), 4, 1, 1, 1, 8, True, False),  # depth-wise
        ((-20, 43), 6, 2, 1, 1, 2, False, True),  # an asymmetric input's shifted grid
    ],
)
def test_the_integer_convolution_is_the_exact_value_within_float32_rounding(
    grid, w_bits, stride, padding, dilation, groups, channels_last, bias
) -> None:
    generator = torch.Generator().manual_seed(w_bits + groups)
    low, high = grid
    channels = 8
    levels, weight, step = _operands(generator, low, high, w_bits, channels, groups)
    if channels_last:
        levels = levels.contiguous(memory_format=torch.channels_last)
    bias_values = torch.randn(8, generator=generator) if bias else None
    geometry = ConvGeometry((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups, False)
    out = integer_conv.integer_conv2d(levels, step, low, weight, bias_values, geometry)

    arguments = (stride, padding, dilation, groups)
    x_hat = (levels.to(torch.float64) + low) * step
    w_hat = weight.levels.to(torch.float64) * weight.steps.double().view(-1, 1, 1, 1)
    exact = F.conv2d(
        x_hat, w_hat, None if bias_values is None else bias_values.double(), *arguments
    )
    rounded = F.conv2d(x_hat.float(), w_hat.float(), bias_values, *arguments)
    assert out.dtype == torch.float32 and out.shape == exact.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    error = (out.double() - exact).abs().max()
    assert error <= 4e-7 * float(exact.abs().max())  # one float32 rounding of the scaled sum
    assert error <= (rounded.double() - exact).abs().max() * 1.01 + 1e-12


def test_the_probe_refuses_a_convolution_that_is_not_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU whose int8 kernels saturate (uint8·int8 pairs summed in int16) or a build without
    the ops takes the float path."""
    real = integer_conv._convolve

    def saturating(levels, *arguments):
        return real(levels, *arguments).clamp(-1.0, 1.0)

    def failing(*arguments):
        raise RuntimeError("no oneDNN kernel for this CPU")

    try:
        for grouped in (False, True):
            with monkeypatch.context() as patch:
                patch.setattr(integer_conv, "_convolve", saturating)
                integer_conv.available.cache_clear()
                assert not integer_conv.available(grouped)
            with monkeypatch.context() as patch:
                patch.setattr(integer_conv, "_convolve", failing)
                integer_conv.available.cache_clear()
                with pytest.warns(RuntimeWarning, match="integer convolution is off"):
                    assert not integer_conv.available(grouped)
        with monkeypatch.context() as patch:
            patch.setattr(torch.ops, "onednn", object())
            integer_conv.available.cache_clear()
            assert not integer_conv.available()
    finally:
        integer_conv.available.cache_clear()
    x = torch.rand(1, 4, 5, 5)
    shape = torch.Size((3, 4, 3, 3))
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1, False)
    assert integer_conv.servable(x, shape, geometry, 15, -8, 7) == integer_conv.available()
    assert not integer_conv.servable(x, shape, geometry, 256, -8, 7)  # beyond uint8
    assert not integer_conv.servable(x, shape, geometry, 15, -129, 127)
    assert not integer_conv.servable(x.double(), shape, geometry, 15, -8, 7)
    assert not integer_conv.servable(x.requires_grad_(), shape, geometry, 15, -8, 7)
    # more products per output than int32 holds at the grids' extremes
    wide = torch.Size((3, integer_conv.MAX_PRODUCTS_PER_OUTPUT // 9 + 1, 3, 3))
    assert not integer_conv.servable(torch.rand(1, wide[1], 5, 5), wide, geometry, 15, -8, 7)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 0, 1, 1), (2, 3, 2, 4)]
)
def test_small_convolutions_stay_in_float(
    stride: int, padding: int, dilation: int, groups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the multiply-add count at which it pays, the float convolution runs."""
    x = torch.rand(2, 8, 11, 9)
    weight = torch.rand(12, 8 // groups, 3, 5)
    geometry = ConvGeometry((stride,) * 2, (padding,) * 2, (dilation,) * 2, groups, False)
    out = F.conv2d(x, weight, None, stride, padding, dilation, groups)
    count = integer_conv.multiply_adds(x, weight.shape, geometry)
    assert count == out.numel() * (8 // groups) * 15
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", count + 1)
    assert not integer_conv.servable(x, weight.shape, geometry, 15, -8, 7)
    monkeypatch.setattr(integer_conv, "MIN_MULTIPLY_ADDS", count)
    assert integer_conv.servable(x, weight.shape, geometry, 15, -8, 7) == integer_conv.available()


CASES = list(itertools.product((True, False), (True, False), (True, False)))


@needs_integer_conv
@pytest.mark.parametrize(("per_channel", "a_symmetric", "channels_last"), CASES)
def test_the_fused_node_on_the_integer_grids_changes_no_gradient(
    per_channel: bool,
    a_symmetric: bool,
    channels_last: bool,
    integer_calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The forward's output moves by float32 rounding, the backward reads the same saved
    operands: every gradient is bit for bit the float path's."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 8, 8, generator=generator) * 1.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    leaves = {
        "x": x,
        "weight": torch.randn(7, 5, 3, 3, generator=generator) * 0.4,
        "bias": torch.randn(7, generator=generator),
        "input_log_step": torch.full((1,), -1.9),
        "input_offset": None if a_symmetric else torch.full((1,), -0.45),
        "weight_log_step": torch.log(0.05 + 0.05 * torch.rand(7 if per_channel else 1)),
    }
    grids = LsqGrids(-8, 7, 0.013, -8, 7, 0.021)
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1, channels_last)
    upstream = torch.randn(2, 7, 8, 8, generator=generator)
    results = []
    for integer in (True, False):
        monkeypatch.setattr(integer_conv, "ENABLED", integer)
        inputs = {
            name: None if value is None else value.clone().requires_grad_()
            for name, value in leaves.items()
        }
        out = lsq_conv2d(**inputs, weight_offset=None, grids=grids, geometry=geometry)
        out.backward(upstream)
        grads = {name: value.grad for name, value in inputs.items() if value is not None}
        results.append((out.detach(), grads))
    assert integer_calls == [1]
    (out_integer, grads_integer), (out_float, grads_float) = results
    assert torch.allclose(
        out_integer, out_float, rtol=0.0, atol=2e-6 * float(out_float.abs().max())
    )
    for name, grad in grads_float.items():
        assert torch.equal(grads_integer[name], grad), name


def test_the_shared_weight_node_gives_each_weights_exact_levels() -> None:
    """Its kernel writes each value's level: ``levels·step`` is the fake-quantized weight, for
    per-channel steps given as views of one buffer (oneDNN reads the memory as it is)."""
    generator = torch.Generator().manual_seed(4)
    entries = []
    for channels, qmin, qmax in ((6, -8, 7), (4, -2, 1), (3, -128, 127)):
        weight = torch.randn(channels, 5, 3, 3, generator=generator) * 0.3
        log_step = torch.log(0.02 + 0.05 * torch.rand(channels, generator=generator))
        log_step[-1] = -40.0  # clamped to the minimum step
        grad_scale = 1.0 / (45 * qmax) ** 0.5
        entries.append(WeightEntry(weight, log_step, None, qmin, qmax, grad_scale))
    shared = quantize_weights(entries)
    for entry, w_hat, levels in zip(entries, *shared, strict=True):
        assert levels is not None
        assert levels.levels.dtype == torch.int8 and levels.levels.shape == entry.weight.shape
        assert levels.steps.is_contiguous() and levels.steps.shape == (entry.weight.shape[0],)
        assert int(levels.levels.min()) >= entry.qmin and int(levels.levels.max()) <= entry.qmax
        assert torch.equal(levels.levels.float() * levels.steps.view(-1, 1, 1, 1), w_hat)
        alone = integer_conv.WeightLevels.per_channel(
            w_hat, torch.stack([levels.steps, 1 / levels.steps, 0 * levels.steps], 1)
        )
        assert alone is not None and torch.equal(alone.levels, levels.levels)
    entries[1].weight[0, 0, 0, 0] = float("nan")
    assert quantize_weights(entries).levels == (None,) * len(entries)


@needs_integer_conv
def test_a_nan_takes_the_float_convolution(integer_calls: list[int]) -> None:
    """No grid index represents NaN: an input or weight holding one convolves in float, so
    the NaN reaches the output (and the loss, where training's finiteness check stops it)."""
    grids = LsqGrids(-8, 7, 0.013, -8, 7, 0.021)
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1, False)
    for where in ("input", "weight", None):
        x = torch.randn(2, 4, 6, 6)
        weight = torch.randn(5, 4, 3, 3) * 0.3
        if where == "input":
            x[1, 2, 3, 3] = float("nan")
        elif where == "weight":
            weight[2, 1, 1, 1] = float("nan")
        out = lsq_conv2d(
            x.requires_grad_(),
            weight.requires_grad_(),
            None,
            torch.full((1,), -2.0, requires_grad=True),
            None,
            torch.full((5,), -3.0, requires_grad=True),
            None,
            grids,
            geometry,
        )
        assert bool(out.isnan().any()) == (where is not None)
    assert integer_calls == [1]  # only the finite operands on the integer grids
    levels = integer_conv.WeightLevels.per_channel(
        weight.detach().clone().fill_(float("nan")), torch.ones(5, 3)
    )
    assert levels is None


def test_fake_quantize_levels_writes_the_grid_indices_beside_the_values() -> None:
    x = torch.randn(2, 3, 6, 6) * 2
    step = 0.25
    reciprocal = 4.0
    for source in (x, x.contiguous(memory_format=torch.channels_last)):
        out, levels = lsq_kernels.fake_quantize_levels(source, step, reciprocal, -5, 10)
        assert torch.equal(out, lsq_kernels.fake_quantize(source, step, reciprocal, -5, 10))
        assert levels.dtype == torch.uint8
        assert levels.stride() == source.stride()
        assert torch.equal((levels.float() - 5) * step, out)
        assert int(levels.min()) == 0 and int(levels.max()) == 15  # clipped at both ends
    with pytest.raises(ValueError, match="256 levels"):
        lsq_kernels.fake_quantize_levels(x, step, reciprocal, -200, 100)
    x[0, 1, 2, 3] = float("nan")
    out, levels = lsq_kernels.fake_quantize_levels(x, step, reciprocal, -5, 10)
    assert levels is None  # no index for NaN
    assert torch.equal(out.isnan(), x.isnan())
