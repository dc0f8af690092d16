"""The one-pass LSQ+ kernels against the torch path: forward values and the backward mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supernet.quantizers import lsq_kernels
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
