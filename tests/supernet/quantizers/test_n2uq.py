"""Elastic N2UQ: uniform levels at midpoint thresholds, G-STE gradients, weight levels, forms."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.space import LayerChoice, QuantForm
from supernet import build_supernet, init_quantizers
from supernet.quantizers import QUANTIZERS, QuantizerSpec, build_quantizer
from supernet.quantizers.n2uq import N2uqQuantizer, bits_key, interval_count
from supernet.quantizers.n2uq_ops import (
    boundary_counts,
    merged_boundaries,
    n2uq_activation,
    n2uq_weight,
    weight_gamma,
)

FORM = QuantForm("channel", True, False)
ALL_BITS = range(2, 9)


def make_quantizer(bits=ALL_BITS) -> N2uqQuantizer:
    weight = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    spec = QuantizerSpec(
        name="n2uq",
        w_bits=tuple(bits),
        a_bits=tuple(bits),
        granularities=("channel",),
        w_symmetries=(True,),
        a_symmetries=(False,),
    )
    quantizer = build_quantizer(weight, spec)
    assert isinstance(quantizer, N2uqQuantizer)
    return quantizer


def random_parameters(bits: int, seed: int, dtype=torch.float64):
    """log α_in, log α_out, s and log widths of a non-uniform grid, all requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    n = interval_count(bits)
    log_in = torch.tensor([0.3], dtype=dtype)
    log_out = torch.tensor([-0.4], dtype=dtype)
    start = torch.tensor([-0.7], dtype=dtype)
    log_widths = (torch.rand(n, generator=generator, dtype=dtype) - 0.5) - math.log(n / 4)
    return [t.requires_grad_() for t in (log_in, log_out, start, log_widths)]


def edges_of(log_in, start, log_widths) -> torch.Tensor:
    """Interval edges d_0..d_n in input (x) units, computed independently of the ops module."""
    widths = log_widths.detach().exp()
    edges = [float(start.detach())]
    for width in widths.tolist():
        edges.append(edges[-1] + width)
    return torch.tensor(edges, dtype=widths.dtype) * log_in.detach().exp()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_levels_are_uniform_and_thresholds_at_midpoints(bits: int) -> None:
    log_in, log_out, start, log_widths = random_parameters(bits, seed=bits)
    edges = edges_of(log_in, start, log_widths)
    midpoints = (edges[:-1] + edges[1:]) / 2
    step = float(log_out.exp())
    lowest = float(log_in.exp() * start)
    gap = float((edges[1:] - edges[:-1]).min()) / 10
    below = n2uq_activation(midpoints - gap, log_in, log_out, start, log_widths).detach()
    above = n2uq_activation(midpoints + gap, log_in, log_out, start, log_widths).detach()
    levels = torch.arange(interval_count(bits), dtype=torch.float64)
    # crossing the i-th midpoint moves the output from level i-1 to level i, one step up
    assert torch.allclose(below, lowest + step * levels, atol=1e-12)
    assert torch.allclose(above, lowest + step * (levels + 1), atol=1e-12)
    # a dense sweep meets exactly 2^b output values, equally spaced
    sweep = torch.linspace(float(edges[0]) - 1, float(edges[-1]) + 1, 200_000, dtype=torch.float64)
    values = n2uq_activation(sweep, log_in, log_out, start, log_widths).detach().unique()
    assert values.numel() == 2**bits
    assert torch.allclose(values.diff(), torch.full_like(values.diff(), step), atol=1e-9)
    assert float(values[0]) == pytest.approx(lowest)
    # the quantizer reports the same thresholds
    quantizer = make_quantizer([bits])
    key = bits_key(bits)
    with torch.no_grad():
        quantizer.input_log_scales[key].copy_(log_in)
        quantizer.input_starts[key].copy_(start)
        quantizer.input_log_widths[key].copy_(log_widths)
    assert torch.allclose(quantizer.thresholds(bits).double(), midpoints, atol=1e-5)


def clipped_ste_reference(x, log_in, log_out, start, log_width, n):
    """A uniform quantizer with the clipped straight-through estimator, via plain autograd."""
    in_scale, out_scale, width = log_in.exp(), log_out.exp(), log_width.exp()
    position = ((x / in_scale - start) / width).clamp(0, n)
    level = position + (torch.floor(position + 0.5).clamp(0, n) - position).detach()
    return in_scale * start + out_scale * level


@pytest.mark.parametrize("bits", ALL_BITS)
def test_equal_widths_backward_equals_clipped_ste(bits: int) -> None:
    n = interval_count(bits)
    generator = torch.Generator().manual_seed(bits)
    x = torch.randn(5000, generator=generator, dtype=torch.float64) * 3
    upstream = torch.randn(5000, generator=generator, dtype=torch.float64)
    log_in, log_out, start, _ = random_parameters(bits, seed=0)
    log_width = torch.tensor([math.log(5.0 / n)], dtype=torch.float64, requires_grad=True)
    log_widths = log_width.detach().expand(n).clone().requires_grad_()
    x1 = x.clone().requires_grad_()
    out = n2uq_activation(x1, log_in, log_out, start, log_widths)
    out.backward(upstream)
    params = (log_in, log_out, start)
    got = [x1.grad, *(p.grad.clone() for p in params), log_widths.grad.sum()]
    for p in params:
        p.grad = None
    x2 = x.clone().requires_grad_()
    reference = clipped_ste_reference(x2, log_in, log_out, start, log_width, n)
    assert torch.allclose(out, reference, atol=1e-12)
    reference.backward(upstream)
    expected = [x2.grad, *(p.grad for p in params), log_width.grad[0]]
    for name, a, b in zip(
        ("x", "log_in", "log_out", "start", "widths"), got, expected, strict=True
    ):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), name


def surrogate(x, log_in, log_out, start, log_widths):
    """The G-STE surrogate in plain float64 torch: F(u) = (u − d_(i−1))/a_i + i − 1 on
    interval i, clipped to [0, n]; output α_in·s + α_out·F (a loop, fine for a reference)."""
    in_scale, out_scale = log_in.exp(), log_out.exp()
    widths = log_widths.exp()
    u = x / in_scale
    position = torch.zeros_like(u)
    lower = start
    for i in range(widths.numel()):
        inside = (u >= lower) & (u < lower + widths[i])
        position = torch.where(inside, (u - lower) / widths[i] + i, position)
        lower = lower + widths[i]
    position = torch.where(u >= lower, torch.full_like(u, float(widths.numel())), position)
    return in_scale * start + out_scale * position


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gste_gradients_match_formula_and_finite_differences(bits: int) -> None:
    n = interval_count(bits)
    params = random_parameters(bits, seed=10 + bits)
    log_in, log_out, start, log_widths = params
    edges = edges_of(log_in, start, log_widths)
    # inputs inside every interval (away from its edges), plus some below and above the range
    generator = torch.Generator().manual_seed(bits)
    fractions = 0.05 + 0.9 * torch.rand(n, 4, generator=generator, dtype=torch.float64)
    inside = (edges[:-1, None] + fractions * (edges[1:] - edges[:-1])[:, None]).reshape(-1)
    x = torch.cat([inside, edges[:1] - 0.5, edges[-1:] + 0.5]).requires_grad_()
    upstream = torch.randn(x.numel(), generator=generator, dtype=torch.float64)
    n2uq_activation(x, *params).backward(upstream)
    got = [x.grad.clone(), *(p.grad.clone() for p in params)]

    # the formulas, element by element
    in_scale, out_scale = float(log_in.exp()), float(log_out.exp())
    widths = log_widths.detach().exp()
    u = x.detach() / in_scale
    d = edges / in_scale
    interval = torch.bucketize(u, d, right=True) - 1  # 0-based, -1 below, n above
    grad_x = torch.zeros_like(u)
    grad_widths = torch.zeros(n, dtype=torch.float64)
    grad_start = in_scale * upstream.sum()
    grad_in_scale = float(start) * upstream.sum()
    for element, i in enumerate(interval.tolist()):
        if not 0 <= i < n:
            continue
        g, a_i = float(upstream[element]), float(widths[i])
        grad_x[element] = g * out_scale / (in_scale * a_i)
        grad_widths[i] -= g * out_scale * (u[element] - d[i]) / a_i**2
        grad_widths[:i] -= g * out_scale / a_i
        grad_start -= g * out_scale / a_i
        grad_in_scale -= g * out_scale / a_i * float(x[element]) / in_scale**2
    level = (n2uq_activation(x.detach(), *params).detach() - in_scale * float(start)) / out_scale
    formula = [
        grad_x,
        (grad_in_scale * in_scale).reshape(1),
        (upstream * level).sum().reshape(1) * out_scale,
        grad_start.reshape(1),
        grad_widths * widths,
    ]
    for name, a, b in zip(("x", "log_in", "log_out", "start", "widths"), got, formula, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10), name

    # central finite differences of the surrogate (the output scale: of the forward itself)
    def objective(values: list[torch.Tensor], which: int) -> float:
        function = n2uq_activation if which == 2 else surrogate
        with torch.no_grad():
            return float((upstream * function(values[0], *values[1:])).sum())

    epsilon = 1e-6
    base = [x.detach(), *(p.detach() for p in params)]
    for which, name in enumerate(("x", "log_in", "log_out", "start", "widths")):
        numeric = torch.zeros_like(base[which])
        for position in range(base[which].numel()):
            shifted = [t.clone() for t in base]
            shifted[which].view(-1)[position] += epsilon
            plus = objective(shifted, which)
            shifted[which].view(-1)[position] -= 2 * epsilon
            minus = objective(shifted, which)
            numeric.view(-1)[position] = (plus - minus) / (2 * epsilon)
        assert torch.allclose(got[which], numeric, rtol=1e-5, atol=1e-6), name


def test_cpu_lookup_grid_equals_bucketize_and_falls_back_when_crowded() -> None:
    generator = torch.Generator().manual_seed(0)
    for bits in ALL_BITS:
        widths = torch.rand(interval_count(bits), generator=generator) + 0.01
        boundaries = merged_boundaries(torch.tensor([-1.0]), widths)
        infinities = torch.tensor([float("inf"), -float("inf")])
        x = torch.cat([torch.randn(20000, generator=generator) * 30, boundaries, infinities])
        assert torch.equal(
            boundary_counts(x, boundaries).long(), torch.bucketize(x, boundaries, right=True)
        )
    # one huge interval and many tiny ones crowd a cell: bucketize answers
    widths = torch.cat([torch.full((14,), 1e-4), torch.tensor([100.0])])
    boundaries = merged_boundaries(torch.tensor([0.0]), widths)
    x = torch.linspace(-1, 101, 10001)
    assert torch.equal(
        boundary_counts(x, boundaries).long(), torch.bucketize(x, boundaries, right=True)
    )


def stratified_uniform(channels: int, per_channel: int, seed: int) -> torch.Tensor:
    # i.i.d. samples move mean|W| by ~0.6/sqrt(N), and the end levels' share by 2^(b−1) times
    # that; one jittered sample per equal stratum is U(−1, 1) without that noise.
    generator = torch.Generator().manual_seed(seed)
    jitter = torch.rand(channels, per_channel, generator=generator, dtype=torch.float64)
    strata = torch.arange(per_channel, dtype=torch.float64)
    values = -1 + 2 * (strata + jitter) / per_channel
    order = torch.argsort(torch.rand(channels, per_channel, generator=generator), dim=1)
    return values.gather(1, order).float()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_uniform_weights_fill_every_level_equally(bits: int) -> None:
    weight = stratified_uniform(4, 2**bits * 2000, seed=bits)
    quantized = n2uq_weight(weight, bits)
    for channel in range(4):
        levels, counts = quantized[channel].unique(return_counts=True)
        assert levels.numel() == 2**bits
        share = counts.double() / counts.sum()
        assert torch.allclose(share, torch.full_like(share, 2.0**-bits), rtol=0.02)
        # uniform, symmetric, no zero level, outermost level at ±γ_b·mean|W|
        assert torch.allclose(levels.diff(), levels.diff()[:1].expand(levels.numel() - 1))
        assert torch.allclose(levels, -levels.flip(0))
        assert not (levels == 0).any()
        scale = weight_gamma(bits) * weight[channel].abs().mean()
        assert float(levels[-1]) == pytest.approx(float(scale), rel=1e-5)
    # i.i.d. U(−1, 1) weights too, where the sampling noise allows 2 %
    if bits <= 4:
        iid = torch.rand(2, 2**20, generator=torch.Generator().manual_seed(bits)) * 2 - 1
        _, counts = n2uq_weight(iid, bits)[0].unique(return_counts=True)
        share = counts.double() / counts.sum()
        assert torch.allclose(share, torch.full_like(share, 2.0**-bits), rtol=0.02)


def test_weight_gradient_is_straight_through_for_every_weight() -> None:
    """As the official N2UQ: weights outside ±α (here −3.0 and 2.9) get the gradient too."""
    weight = torch.tensor([[-3.0, -1.0, -0.2, 0.1, 0.5, 2.9]], requires_grad=True)
    upstream = torch.tensor([[0.3, -1.0, 2.0, 0.5, -0.7, 1.1]])
    n2uq_weight(weight, 2).backward(upstream)
    scale = weight_gamma(2) * weight.detach().abs().mean()  # 1.5 · 1.2833 = 1.925
    assert (weight.detach().abs() > scale).sum() == 2
    assert weight.grad is not None
    assert torch.allclose(weight.grad, upstream / scale, rtol=1e-6)
    assert (weight.grad != 0).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weight_gradient_scale_is_the_official_one_over_alpha(bits: int) -> None:
    """The official N2UQ differentiates through W/α (α = γ_b·mean|W| per output channel,
    detached), so ∂L/∂W = g/α: here α = γ_b·0.05 for channel 0 and γ_b·0.2 for channel 1."""
    weight = torch.tensor(
        [[[0.02, -0.08], [0.05, -0.05]], [[0.4, -0.1], [0.1, -0.2]]], requires_grad=True
    )
    upstream = torch.tensor([[[1.0, -2.0], [0.5, 0.25]], [[-1.0, 3.0], [2.0, -0.5]]])
    n2uq_weight(weight, bits).backward(upstream)
    gamma = (2**bits - 1) / 2 ** (bits - 1)
    alpha = torch.tensor([gamma * 0.05, gamma * 0.2]).view(2, 1, 1)
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, upstream / alpha, rtol=1e-6, atol=0.0)
    # a channel with 4× the mean |W| gets a quarter of the gradient per unit upstream
    per_unit = weight.grad / upstream
    assert float(per_unit[0].mean() / per_unit[1].mean()) == pytest.approx(4.0, rel=1e-6)


def test_registry_forms_and_eager_parameters() -> None:
    assert QUANTIZERS["n2uq"] is N2uqQuantizer
    supernet = build_supernet("lenet5", num_classes=10, in_channels=1, quantizer="n2uq")
    assert supernet.space.forms == (FORM,)
    quantizer = make_quantizer()
    for bits in ALL_BITS:
        assert quantizer.input_log_widths[bits_key(bits)].shape == (2**bits - 1,)
    # 7 bit widths × (in scale, out scale, start, widths); weights learn nothing
    assert len(list(quantizer.parameters())) == 28
    source = make_quantizer()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.25)
    target = make_quantizer()
    target.load_state_dict(source.state_dict())
    for a, b in zip(source.parameters(), target.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("granularities", ("tensor",), "tensor-sym-asym"),
        ("w_symmetries", (False,), "channel-asym-asym"),
        ("a_symmetries", (True,), "channel-sym-sym"),
    ],
)
def test_forms_it_cannot_express_are_refused(option: str, value: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=f"'n2uq' cannot express the forms {message}"):
        build_supernet("lenet5", num_classes=10, in_channels=1, quantizer="n2uq", **{option: value})


def test_cli_refuses_unsupported_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["train", "--quantizer", "n2uq", "--granularity", "tensor", "--out", str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "n2uq" in error and "tensor" in error
    assert "Traceback" not in error
    assert not out.exists() or not any(out.iterdir())


def test_no_parameter_is_dead() -> None:
    torch.manual_seed(0)
    supernet = build_supernet(
        "lenet5", num_classes=10, in_channels=1, quantizer="n2uq", first_last="elastic"
    )
    images = torch.randn(32, 1, 28, 28)
    init_quantizers(supernet, images)
    # Right after calibration the widths are equal and the scales match, where the start's
    # G-STE term cancels its offset term inside the range (as LSQ+'s offset gets no gradient
    # from unclipped inputs); any training step leaves that point, as this nudge does.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in supernet.named_parameters():
            if "log_widths" in name or "output_log_scales" in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    supernet.train()
    for bits in ALL_BITS:
        supernet.set_subnet(supernet.space.uniform(bits, bits, FORM))
        supernet(images).logsumexp(1).sum().backward()
    for name, parameter in supernet.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_calibration_starts_from_the_searched_uniform_grid() -> None:
    quantizer = make_quantizer()
    relu_inputs = torch.rand(5000, generator=torch.Generator().manual_seed(0)) * 3
    quantizer.calibrate(torch.randn(8, 4, 3, 3), relu_inputs, 0.0, 3.0)
    assert bool(quantizer.calibrated)
    handle = quantizer.resolve(LayerChoice(4, 4, FORM))
    assert handle is not None
    assert float(handle.start) == 0.0  # non-negative inputs: the lowest level is 0
    assert torch.equal(handle.log_widths, torch.zeros(15))
    assert torch.equal(handle.log_in_scale, handle.log_out_scale)
    error = (quantizer.quantize_input(relu_inputs, handle) - relu_inputs).pow(2).mean()
    assert error < 0.2**2 / 12 * 1.5  # the 4-bit grid over [0, 3]: step ≈ 0.2
    signed = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    quantizer.calibrate(torch.randn(8, 4, 3, 3), signed, float(signed.min()), float(signed.max()))
    quantized = quantizer.quantize_input(signed, handle)
    assert float(quantized.min()) < -1.0  # signed inputs: the start moves below zero


def test_inherit_merges_adjacent_intervals() -> None:
    quantizer = make_quantizer()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        quantizer.input_log_widths["b4"].copy_(torch.randn(15, generator=generator) * 0.3)
        quantizer.input_starts["b4"].fill_(-2.0)
    before = quantizer.input_log_widths["b5"].detach().clone()
    quantizer.inherit(4, 3)
    fine = quantizer.input_log_widths["b4"].detach().exp()
    coarse = quantizer.input_log_widths["b3"].detach().exp()
    assert torch.allclose(coarse, fine[:14].reshape(7, 2).sum(1))
    assert torch.equal(quantizer.input_starts["b3"], quantizer.input_starts["b4"])
    assert torch.allclose(
        quantizer.output_log_scales["b3"].exp(), 2 * quantizer.output_log_scales["b4"].exp()
    )
    # the 3-bit outputs are the even 4-bit levels
    x = torch.linspace(-3, 10, 5001)
    h3 = quantizer.resolve(LayerChoice(3, 3, FORM))
    h4 = quantizer.resolve(LayerChoice(4, 4, FORM))
    lowest = float(quantizer.input_log_scales["b4"].exp() * quantizer.input_starts["b4"])
    step4 = float(quantizer.output_log_scales["b4"].exp())
    levels3 = ((quantizer.quantize_input(x, h3) - lowest) / step4).round().unique()
    levels4 = ((quantizer.quantize_input(x, h4) - lowest) / step4).round().unique()
    assert set(levels3.tolist()) == {float(k) for k in range(0, 15, 2)}
    assert set(levels4.tolist()) == {float(k) for k in range(16)}
    # two bits down merges groups of four; other bit widths are untouched
    quantizer.inherit(4, 2)
    two = quantizer.input_log_widths["b2"].detach().exp()
    assert torch.allclose(two, fine[:12].reshape(3, 4).sum(1))
    assert torch.equal(quantizer.input_log_widths["b5"], before)
    with pytest.raises(ValueError, match="to_bits < from_bits"):
        quantizer.inherit(3, 4)


@pytest.mark.slow
def test_cli_trains_progressively_and_evaluates_an_n2uq_supernet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    train = [
        "train", "--quantizer", "n2uq", "--model", "tiny_convnet", "--dataset", "digits",
        "--epochs", "2", "--w-choices", "2,4", "--a-choices", "2,4", "--schedule", "progressive",
        "--holdout", "200", "--calib-images", "200", "--quant-init-images", "64",
        "--no-progress", "--out", str(out),
    ]  # fmt: skip
    assert main(train) == 0
    capsys.readouterr()
    assert main(["eval", "--supernet", str(out / "supernet.pt"), "--uniform", "2/2"]) == 0
    printed = capsys.readouterr().out
    assert "channel-sym-asym" in printed
