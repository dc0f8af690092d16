"""Elastic LSQ+ quantizer: eager per-entry parameters, calibration, inheritance, registry."""

from __future__ import annotations

import itertools

import pytest
import torch

from eqsearch.space import Granularity, LayerChoice, QuantForm
from supernet.quantizers import QUANTIZERS, QuantizerSpec, build_quantizer, quantizer_class
from supernet.quantizers.clipping import integer_grid, search_step_sizes
from supernet.quantizers.lsq import LsqQuantizer, input_key, weight_key


def make_quantizer(spec: QuantizerSpec | None = None, shape=(8, 4, 3, 3)) -> LsqQuantizer:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.1
    quantizer = build_quantizer(weight, spec or QuantizerSpec())
    assert isinstance(quantizer, LsqQuantizer)
    return quantizer


def test_every_entry_exists_eagerly_with_its_shape() -> None:
    quantizer = make_quantizer()
    for bits, granularity, symmetric in itertools.product(range(2, 9), Granularity, (True, False)):
        key = weight_key(bits, granularity, symmetric)
        expected = (8,) if granularity is Granularity.CHANNEL else (1,)
        assert quantizer.weight_log_steps[key].shape == expected
        assert (key in quantizer.weight_offsets) == (not symmetric)
    for bits, symmetric in itertools.product(range(2, 9), (True, False)):
        assert quantizer.input_log_steps[input_key(bits, symmetric)].shape == (1,)
    # 28 weight steps + 14 weight offsets + 14 input steps + 7 input offsets
    assert len(list(quantizer.parameters())) == 63


def test_state_dict_loads_before_any_data() -> None:
    source = make_quantizer()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.mul_(3.0)
    source.input_signed.fill_(True)
    target = make_quantizer()
    target.load_state_dict(source.state_dict())
    for a, b in zip(source.parameters(), target.parameters(), strict=True):
        assert torch.equal(a, b)
    assert target._input_signed is True


def test_registry() -> None:
    assert QUANTIZERS["lsq"] is LsqQuantizer
    with pytest.raises(ValueError, match="unknown quantizer 'nope'"):
        quantizer_class("nope")


def test_check_rejects_choices_outside_the_spec() -> None:
    quantizer = make_quantizer(
        QuantizerSpec(w_bits=(2, 4), a_bits=(4,), granularities=("channel",))
    )
    quantizer.check(LayerChoice(2, 4, QuantForm("channel", True, False)))
    with pytest.raises(ValueError, match="bits w3/a4"):
        quantizer.check(LayerChoice(3, 4))
    with pytest.raises(ValueError, match="form tensor-sym-sym"):
        quantizer.check(LayerChoice(2, 4, QuantForm("tensor", True, True)))


def test_only_the_used_entry_gets_gradients() -> None:
    quantizer = make_quantizer()
    weight = torch.randn(8, 4, 3, 3, requires_grad=True)
    choice = LayerChoice(3, 5, QuantForm("tensor", False, False))
    handle = quantizer.resolve(choice)
    x = torch.randn(2, 4, 6, 6) - 0.5
    out = (
        quantizer.quantize_input(x, handle).sum() + quantizer.quantize_weight(weight, handle).sum()
    )
    out.backward()
    used = {id(p) for p in quantizer.parameters_for(choice)}
    assert len(used) == 4
    for name, parameter in quantizer.named_parameters():
        if id(parameter) in used:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


def test_calibration_sets_input_sign_and_reduces_error() -> None:
    quantizer = make_quantizer()
    weight = torch.randn(8, 4, 3, 3) * 0.1
    relu_inputs = torch.rand(5000) * 3
    quantizer.calibrate(weight, relu_inputs, 0.0, 3.0)
    assert not quantizer._input_signed
    assert bool(quantizer.calibrated)
    choice = LayerChoice(4, 4, QuantForm("channel", True, True))
    handle = quantizer.resolve(choice)
    calibrated_error = (quantizer.quantize_input(relu_inputs, handle) - relu_inputs).pow(2).mean()
    # the unsigned 4-bit grid over [0, 3] has step ≈ 0.2: error ≈ step²/12
    assert calibrated_error < 0.2**2 / 12 * 1.5
    signed_inputs = torch.randn(5000)
    quantizer.calibrate(
        weight, signed_inputs, float(signed_inputs.min()), float(signed_inputs.max())
    )
    assert quantizer._input_signed
    assert quantizer.input_grid(4, symmetric=True) == (-8, 7)
    assert quantizer.input_grid(4, symmetric=False) == (0, 15)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("signed", [True, False])
def test_clipping_search_beats_min_max_ranges(symmetric: bool, signed: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(4, 4000, generator=generator)
    if not signed:
        values = values.abs()
    values[:, 0] = 8.0  # an outlier: min-max ranges waste the grid on it
    steps, offsets = search_step_sizes(values, [2, 4, 8], signed=signed, symmetric=symmetric)
    assert steps.shape == offsets.shape == (3, 4)
    assert (steps > 0).all()
    if symmetric:
        assert (offsets == 0).all()
    for row, bits in enumerate([2, 4, 8]):
        qmin, qmax = integer_grid(bits, signed)
        searched = _error(values, steps[row], offsets[row], qmin, qmax)
        naive_step = (values.amax(1) - torch.minimum(values.amin(1), torch.zeros(4))) / (
            qmax - qmin
        )
        naive_offset = values.amin(1).clamp(max=0) - qmin * naive_step
        naive = _error(values, naive_step, None if symmetric else naive_offset, qmin, qmax)
        assert (searched <= naive * 1.0001).all()
        if bits == 2:
            assert (searched < naive * 0.8).all()
    # more bits, smaller steps
    assert (steps[0] > steps[1]).all() and (steps[1] > steps[2]).all()


def _error(values, step, offset, qmin, qmax):
    from supernet.quantizers.fake_quant import lsq_fake_quantize

    out = lsq_fake_quantize(values, step, offset, qmin, qmax)
    return (out - values).abs().pow(2.5).mean(1)


def test_inherit_doubles_steps_and_keeps_offsets() -> None:
    quantizer = make_quantizer()
    quantizer.calibrate(torch.randn(8, 4, 3, 3), torch.randn(1000), -3.0, 3.0)
    before = {k: v.detach().clone() for k, v in quantizer.state_dict().items()}
    quantizer.inherit(4, 3)
    for granularity, symmetric in itertools.product(Granularity, (True, False)):
        step4 = quantizer.weight_step(4, granularity, symmetric)
        assert torch.allclose(quantizer.weight_step(3, granularity, symmetric), 2 * step4)
        if not symmetric:
            key4 = weight_key(4, granularity, symmetric)
            key3 = weight_key(3, granularity, symmetric)
            assert torch.equal(quantizer.weight_offsets[key3], quantizer.weight_offsets[key4])
    assert torch.allclose(quantizer.input_step(3, False), 2 * quantizer.input_step(4, False))
    # other bit widths untouched
    key5 = weight_key(5, Granularity.CHANNEL, True)
    assert torch.equal(quantizer.weight_log_steps[key5], before[f"weight_log_steps.{key5}"])


def test_inherited_grid_is_the_even_points_of_the_higher_grid() -> None:
    quantizer = make_quantizer(QuantizerSpec(granularities=("tensor",), w_symmetries=(True,)))
    weight = torch.linspace(-1, 1, 8 * 36).reshape(8, 4, 3, 3)
    quantizer.inherit(4, 3)
    form = QuantForm("tensor", True, True)
    fine = quantizer.quantize_weight(weight, quantizer.resolve(LayerChoice(4, 4, form)))
    coarse = quantizer.quantize_weight(weight, quantizer.resolve(LayerChoice(3, 4, form)))
    step4 = float(quantizer.weight_step(4, Granularity.TENSOR, True))
    fine_levels = set(torch.round(fine / step4).int().unique().tolist())
    coarse_levels = set(torch.round(coarse / step4).int().unique().tolist())
    assert all(level % 2 == 0 for level in coarse_levels)
    assert coarse_levels <= {level for level in range(-8, 8) if level % 2 == 0}
    assert len(fine_levels) > len(coarse_levels)


def test_pinned_full_precision_spec_creates_no_parameters() -> None:
    quantizer = make_quantizer(QuantizerSpec().pinned(32, 32))
    assert list(quantizer.parameters()) == []
    assert quantizer.resolve(LayerChoice(32, 32)) is None
