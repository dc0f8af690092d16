"""The one-pass per-channel LSQ+ kernels against the torch path: values, masks and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from supernet.quantizers import lsq_row_kernels


@pytest.mark.parametrize("log_step", [False, True])
@pytest.mark.parametrize("asymmetric", [False, True])
def test_the_per_channel_kernels_equal_the_torch_path(asymmetric, log_step, monkeypatch) -> None:
    from supernet.quantizers import per_channel_fake_quant

    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 4, 3, 3, generator=generator)
    weight.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    step = 0.05 + 0.1 * torch.rand(6, generator=generator)
    step[5] = 1e-12  # clamped to the minimum step
    offset = torch.randn(6, generator=generator) * 0.2 if asymmetric else None
    if offset is not None:
        offset[4] = 5.0  # a zero point clamped to the grid
    grad = torch.randn(6, 4, 3, 3, generator=generator)
    chain = step if log_step else None

    def both_paths():
        result = per_channel_fake_quant.per_channel_forward(weight, step, offset, -8, 7)
        gradients = per_channel_fake_quant.per_channel_backward(
            grad.clone(), weight, result, -8, 7, 0.3, in_place=True, chain=chain
        )
        return result, gradients

    assert lsq_row_kernels.per_channel_servable(weight)
    kernel, (kernel_grad, *kernel_gradients) = both_paths()
    monkeypatch.setattr(lsq_row_kernels, "per_channel_servable", lambda tensor: False)
    torch_path, (torch_grad, *torch_gradients) = both_paths()
    # bit for bit, NaN where the torch path has NaN
    assert torch.allclose(kernel.out, torch_path.out, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(kernel.constants, torch_path.constants)
    assert kernel.has_offset == torch_path.has_offset == asymmetric
    assert torch.equal(kernel_grad, torch_grad)
    kernel_step, kernel_offset, kernel_total = kernel_gradients
    torch_step, torch_offset, torch_total = torch_gradients
    # NaN rows alike; float64 sums against float32 ones
    assert torch.allclose(kernel_step, torch_step, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert (kernel_offset is None) == (torch_offset is None) == (not asymmetric)
    if kernel_offset is not None:
        assert torch.allclose(kernel_offset, torch_offset, rtol=1e-5, atol=1e-5)
    assert math.isnan(kernel_total) and torch.isnan(torch_total)
    finite_rows = slice(1, None)  # the first channel holds the NaN and infinities
    result = per_channel_fake_quant.per_channel_forward(weight[finite_rows], step[1:], None, -8, 7)
    _, _, _, total = per_channel_fake_quant.per_channel_backward(
        grad[finite_rows].clone(), weight[finite_rows], result, -8, 7, 0.3
    )
    expected = float((grad[finite_rows].double() * result.out.double()).sum())
    assert float(total) == pytest.approx(expected, rel=1e-6)
