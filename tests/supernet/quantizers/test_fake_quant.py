"""LSQ+ fake quantization against PyTorch's reference ops and the LSQ+ gradient formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from supernet.quantizers.clipping import integer_grid
from supernet.quantizers.fake_quant import effective_zero_points, lsq_fake_quantize

BITS = range(2, 9)
# bits, per-channel, symmetric, signed grid
CASES = list(itertools.product(BITS, (True, False), (True, False), (True, False)))


def _params(
    x: torch.Tensor,
    bits: int,
    per_channel: bool,
    symmetric: bool,
    generator: torch.Generator,
    signed: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
    qmin, qmax = integer_grid(bits, signed=signed)
    groups = x.shape[0] if per_channel else 1
    step = 0.02 + torch.rand(groups, generator=generator) * 3.0 / qmax
    if symmetric:
        return step, None, qmin, qmax
    zero_point = torch.randint(qmin, qmax + 1, (groups,), generator=generator).float()
    return step, -zero_point * step, qmin, qmax


def _reference_forward(
    x: torch.Tensor, step: torch.Tensor, offset: torch.Tensor | None, qmin: int, qmax: int
) -> torch.Tensor:
    zero_point = effective_zero_points(step, offset, qmin, qmax)
    if step.numel() == 1:
        return torch.fake_quantize_per_tensor_affine(x, float(step), int(zero_point), qmin, qmax)
    return torch.fake_quantize_per_channel_affine(x, step, zero_point, 0, qmin, qmax)


def _reference_lsq_plus(
    x: torch.Tensor, step: torch.Tensor, offset: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """LSQ+ as its paper writes it, differentiated by autograd:
    ``round(clamp((x − β)/s, qmin, qmax))·s + β`` with a straight-through round."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    s = step.view(shape) if step.numel() > 1 else step
    b = offset.view(shape) if offset.numel() > 1 else offset
    clipped = torch.clamp((x - b) / s, qmin, qmax)
    level = clipped + (torch.round(clipped) - clipped).detach()
    return level * s + b


@pytest.mark.parametrize(("bits", "per_channel", "symmetric", "signed"), CASES)
def test_forward_equals_torch_fake_quantize(
    bits: int, per_channel: bool, symmetric: bool, signed: bool
) -> None:
    generator = torch.Generator().manual_seed(bits * 7 + per_channel * 3 + symmetric)
    x = torch.randn(6, 3, 5, 5, generator=generator) * 2
    step, offset, qmin, qmax = _params(x, bits, per_channel, symmetric, generator, signed)
    ours = lsq_fake_quantize(x, step, offset, qmin, qmax)
    reference = _reference_forward(x, step, offset, qmin, qmax)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize(("bits", "per_channel", "symmetric", "signed"), CASES)
def test_gradients_match_lsq_plus(
    bits: int, per_channel: bool, symmetric: bool, signed: bool
) -> None:
    generator = torch.Generator().manual_seed(100 + bits * 7 + per_channel * 3 + symmetric)
    x = torch.randn(6, 3, 5, 5, generator=generator, dtype=torch.float64) * 2
    step, offset, qmin, qmax = _params(x, bits, per_channel, symmetric, generator, signed)
    step = step.double()
    # the offset of an integer zero point, exact in float64
    offset = None if offset is None else torch.round(offset.double() / step) * step
    upstream = torch.randn(x.shape, generator=generator, dtype=torch.float64)

    x_ours = x.clone().requires_grad_()
    step_ours = step.clone().requires_grad_()
    offset_ours = None if offset is None else offset.clone().requires_grad_()
    grad_scale = 0.37
    out = lsq_fake_quantize(x_ours, step_ours, offset_ours, qmin, qmax, grad_scale)
    out.backward(upstream)

    x_ref = x.clone().requires_grad_()
    step_ref = step.clone().requires_grad_()
    offset_ref = (torch.zeros_like(step) if offset is None else offset).clone().requires_grad_()
    reference = _reference_lsq_plus(x_ref, step_ref, offset_ref, qmin, qmax)
    reference.backward(upstream)

    assert torch.allclose(out, reference, atol=1e-6)
    # input gradient: straight-through inside the clipping range of x/s, zero outside
    zero_point = effective_zero_points(step, offset, qmin, qmax).double()
    view = (-1, 1, 1, 1) if per_channel else (1,)
    shifted = x / step.view(view) + zero_point.view(view)
    mask = ((shifted > qmin) & (shifted < qmax)).double()
    assert torch.equal(x_ours.grad, upstream * mask)
    assert torch.allclose(x_ours.grad, x_ref.grad)
    assert step_ours.grad is not None
    assert torch.allclose(step_ours.grad, step_ref.grad * grad_scale, rtol=1e-9, atol=1e-9)
    if offset_ours is not None:
        assert torch.allclose(offset_ours.grad, offset_ref.grad * grad_scale, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_half_step_band_past_the_grid_is_clipped(per_channel: bool, symmetric: bool) -> None:
    """LSQ's clip test is on x/s: values rounding to an end point from outside the range
    pass no input gradient and give the step the end point's gradient (Q_p, Q_n)."""
    qmin, qmax, s = -8, 7, 0.25
    zero = 0 if symmetric else 2
    # x/s + z just inside the grid, in the half-step band past each end, and far outside
    shifted = torch.tensor([6.9, 7.2, 7.45, 9.0, -7.9, -8.3, -8.45, -11.0], dtype=torch.float64)
    x = ((shifted - zero) * s).reshape(1, -1).repeat(2 if per_channel else 1, 1)
    step = torch.full((x.shape[0],), s, dtype=torch.float64, requires_grad=True)
    offset = None if symmetric else torch.full_like(step, -zero * s).requires_grad_()
    x.requires_grad_()
    lsq_fake_quantize(x, step, offset, qmin, qmax).sum().backward()
    assert x.grad is not None and step.grad is not None
    inside = torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0], dtype=torch.float64)
    assert torch.equal(x.grad[0], inside)
    levels = torch.round(shifted).clamp(qmin, qmax)
    expected = torch.where(inside.bool(), torch.round(shifted) - shifted, levels).sum()
    assert torch.allclose(step.grad, expected.expand_as(step.grad), atol=1e-12)
    if offset is not None:
        assert offset.grad is not None
        assert torch.allclose(offset.grad, (1 - inside).sum().expand_as(offset.grad))


@pytest.mark.parametrize("bits", BITS)
def test_per_channel_asymmetric_is_bit_exact_with_torch(bits: int) -> None:
    """Random tensors and values next to rounding ties: every element equals torch's op."""
    generator = torch.Generator().manual_seed(bits)
    qmin, qmax = integer_grid(bits, signed=True)
    channels = 64
    step = 10 ** (torch.rand(channels, generator=generator) * 3 - 4)
    zero_point = torch.randint(qmin, qmax + 1, (channels,), generator=generator)
    offset = -zero_point.float() * step
    levels = torch.randint(qmin - 4, qmax + 4, (channels, 20_000), generator=generator)
    ties = (levels.float() + 0.5) * step[:, None]
    ulps = torch.randint(-3, 4, ties.shape, generator=generator).float()
    near_ties = torch.nextafter(ties, ties + ulps.sign() * 1.0)
    near_ties = torch.where(ulps == 0, ties, near_ties)
    spread = torch.randn(channels, 20_000, generator=generator) * step[:, None] * 2**bits / 3
    for x in (near_ties, spread):
        ours = lsq_fake_quantize(x, step, offset, qmin, qmax)
        zero_points = effective_zero_points(step, offset, qmin, qmax)
        assert torch.equal(zero_points, zero_point.int())
        reference = torch.fake_quantize_per_channel_affine(x, step, zero_points, 0, qmin, qmax)
        assert torch.equal(ours, reference)


def test_step_gradient_matches_the_hand_computed_lsq_formula() -> None:
    """Away from rounding jumps, the LSQ step gradient is the derivative of s·clamp(n)."""
    x = torch.tensor([0.31, -0.52, 0.94, 3.0, -4.0], dtype=torch.float64)
    step = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    lsq_fake_quantize(x, step, None, -4, 3).sum().backward()
    # d/ds of s·round(x/s) with round frozen is round(x/s) − x/s inside, qmin/qmax outside
    s = 0.2
    expected = sum(
        (round(v / s) - v / s) if -4 < v / s < 3 else min(max(round(v / s), -4), 3)
        for v in x.tolist()
    )
    assert step.grad is not None
    assert float(step.grad) == pytest.approx(expected, rel=1e-9)


def test_zero_point_makes_zero_exact() -> None:
    x = torch.tensor([0.0, 0.5, -0.3])
    step = torch.tensor([0.07])
    out = lsq_fake_quantize(x, step, torch.tensor([-0.35]), 0, 15)
    assert out[0] == 0.0


@settings(max_examples=80, deadline=None)
@given(
    bits=st.integers(2, 8),
    per_channel=st.booleans(),
    symmetric=st.booleans(),
    signed=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_grid_properties(
    bits: int, per_channel: bool, symmetric: bool, signed: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 300, generator=generator) * float(torch.rand(1, generator=generator) * 3)
    step, offset, qmin, qmax = _params(x, bits, per_channel, symmetric, generator, signed)
    out = lsq_fake_quantize(x, step, offset, qmin, qmax)
    zero_point = effective_zero_points(step, offset, qmin, qmax).float()
    view = (-1, 1) if per_channel else (1, 1)
    s, z = step.view(view), zero_point.view(view)
    levels = out / s + z
    # every output lies on the integer grid [qmin, qmax]
    assert torch.allclose(levels, torch.round(levels), atol=1e-3)
    assert levels.min() >= qmin - 1e-3 and levels.max() <= qmax + 1e-3
    # inside the clipping range the error is at most half a step
    inside = (x >= (qmin - z) * s) & (x <= (qmax - z) * s)
    error = (out - x).abs()
    assert (error[inside] <= (s.expand_as(x)[inside] / 2) * (1 + 1e-5) + 1e-7).all()
    # at most 2^b distinct values per channel (per-channel) or per tensor
    rows = out if per_channel else out.reshape(1, -1)
    for row in rows:
        assert len(np.unique(row.numpy())) <= 2**bits


def test_non_contiguous_input() -> None:
    x = torch.randn(2, 8, 4, 4).permute(0, 2, 3, 1)
    step = torch.tensor([0.1], requires_grad=True)
    out = lsq_fake_quantize(x, step, None, 0, 15)
    assert torch.equal(out, torch.fake_quantize_per_tensor_affine(x, 0.1, 0, 0, 15))
    out.sum().backward()
    assert step.grad is not None and torch.isfinite(step.grad).all()
