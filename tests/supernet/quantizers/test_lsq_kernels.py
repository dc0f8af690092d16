"""The one-pass LSQ+ kernels against the torch path: forward values and the backward mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from supernet.quantizers import lsq_kernels, lsq_row_kernels
from supernet.quantizers.fake_quant import lsq_fake_quantize
from supernet.quantizers.lsq_constants import integer_zero_point


@pytest.mark.parametrize(
    ("step", "offset", "qmin", "qmax"),
    [
        (0.037, None, -8, 7),
        (0.1, None, 0, 3),
        (0.0123, -0.4, 0, 255),
        (0.3, 0.5, 0, 15),
        (1e-9, None, -2, 1),  # below the minimum step: clamped as the torch path does
    ],
)
def test_the_kernel_equals_the_torch_forward(step, offset, qmin, qmax) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, 9, generator=generator) * 2
    x.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5 * step])
    offset_tensor = None if offset is None else torch.tensor([offset])
    expected = lsq_fake_quantize(x, torch.tensor([step]), offset_tensor, qmin, qmax)
    step_value = float(np.float32(max(step, 1e-8)))
    reciprocal = float(np.float32(1.0) / np.float32(step_value))
    zero_point = integer_zero_point(step_value, offset, qmin, qmax)
    for layout in (torch.contiguous_format, torch.channels_last):
        source = x.contiguous(memory_format=layout)
        assert lsq_kernels.servable(source)
        out = lsq_kernels.fake_quantize(
            source, step_value, reciprocal, qmin - zero_point, qmax - zero_point
        )
        assert out.is_contiguous(memory_format=layout)
        assert torch.allclose(out, expected, rtol=0, atol=0, equal_nan=True)


def test_the_kernel_splits_large_tensors_over_threads_with_the_same_result() -> None:
    x = torch.randn(4 * lsq_kernels.MIN_ELEMENTS_PER_CHUNK + 3)
    expected = lsq_fake_quantize(x, torch.tensor([0.05]), None, -8, 7)
    reciprocal = float(np.float32(1.0) / np.float32(0.05))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = lsq_kernels.fake_quantize(x, float(np.float32(0.05)), reciprocal, -8, 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, expected)


def test_only_dense_float32_cpu_tensors_without_autograd_take_the_kernel() -> None:
    x = torch.randn(4, 6, 5, 5)
    assert lsq_kernels.servable(x)
    assert not lsq_kernels.servable(x.double())
    assert not lsq_kernels.servable(x[:, ::2])
    assert not lsq_kernels.servable(x.clone().requires_grad_())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_mask_kernel_equals_hardtanh_backward_and_its_sums(layout) -> None:
    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 6, 9, 9, generator=generator) * 2).contiguous(memory_format=layout)
    grad = torch.randn(4, 6, 9, 9, generator=generator).contiguous(memory_format=layout)
    low, high = -0.75, 1.3125  # exactly representable: values equal to a bound are outside
    special = torch.tensor([low, high, float("nan"), float("inf"), -float("inf"), 0.0])
    x.as_strided((x.numel(),), (1,))[: len(special)] = special
    expected = torch.ops.aten.hardtanh_backward(grad, x, low, high)
    written = grad.clone(memory_format=layout)
    assert lsq_kernels.mask_servable(written, x)
    inside, clipped = lsq_kernels.mask_gradient(written, x, low, high)
    assert torch.equal(written, expected)  # the same mask, in place
    assert written.as_strided((written.numel(),), (1,))[:5].eq(0).all()  # bounds, NaN, ±inf
    # a NaN or infinite input makes Σ g·m·x NaN, as torch.dot(g·m, x) does
    assert np.isnan(inside) and torch.dot(expected.reshape(-1), x.reshape(-1)).isnan()
    assert clipped == pytest.approx(float((grad.double() - expected.double()).sum()), rel=1e-12)
    finite = x.clone()
    finite.as_strided((x.numel(),), (1,))[2:5] = 0.0
    written = grad.clone(memory_format=layout)
    inside, _ = lsq_kernels.mask_gradient(written, finite, low, high)
    reference = torch.ops.aten.hardtanh_backward(grad, finite, low, high).double()
    # float32 products summed in float64
    assert inside == pytest.approx(float((reference * finite.double()).sum()), rel=1e-6)


def test_the_mask_kernel_takes_only_pairs_of_one_dense_float32_layout() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert lsq_kernels.mask_servable(torch.randn(2, 3, 4, 4), x)
    assert not lsq_kernels.mask_servable(torch.randn(2, 3, 4, 4).double(), x.double())
    channels_last = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert not lsq_kernels.mask_servable(channels_last, x)  # layouts differ
    assert not lsq_kernels.mask_servable(torch.randn(2, 3, 4, 8)[..., ::2], x)


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
