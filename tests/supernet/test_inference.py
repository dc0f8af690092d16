"""Inference shortcuts: the one-pass activation kernel and strided max pooling, against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from supernet import inference_kernels
from supernet.inference import _strided_max_pool, fast_pooling
from supernet.quantizers.fake_quant import integer_zero_point, lsq_fake_quantize


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
        assert inference_kernels.servable(source)
        out = inference_kernels.fake_quantize(
            source, step_value, reciprocal, qmin - zero_point, qmax - zero_point
        )
        assert out.is_contiguous(memory_format=layout)
        assert torch.allclose(out, expected, rtol=0, atol=0, equal_nan=True)


def test_the_kernel_splits_large_tensors_over_threads_with_the_same_result() -> None:
    x = torch.randn(4 * inference_kernels.MIN_ELEMENTS_PER_CHUNK + 3)
    expected = lsq_fake_quantize(x, torch.tensor([0.05]), None, -8, 7)
    reciprocal = float(np.float32(1.0) / np.float32(0.05))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = inference_kernels.fake_quantize(x, float(np.float32(0.05)), reciprocal, -8, 7)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, expected)


def test_only_dense_float32_cpu_tensors_without_autograd_take_the_kernel() -> None:
    x = torch.randn(4, 6, 5, 5)
    assert inference_kernels.servable(x)
    assert not inference_kernels.servable(x.double())
    assert not inference_kernels.servable(x[:, ::2])
    assert not inference_kernels.servable(x.clone().requires_grad_())


@pytest.mark.parametrize(
    ("kernel", "stride", "size"),
    [
        (2, None, (28, 28)),
        (2, 2, (13, 11)),
        (3, 2, (15, 16)),
        (3, 1, (7, 9)),
        ((2, 3), (1, 2), (8, 9)),
    ],
)
def test_strided_max_pool_equals_max_pool2d(kernel, stride, size) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=generator)
    x[0, 0, 1, 1] = float("nan")
    pool = nn.MaxPool2d(kernel, stride)
    fast = _strided_max_pool(x, pool)
    assert fast is not None and fast.is_contiguous()
    assert torch.equal(torch.nan_to_num(fast, nan=7.0), torch.nan_to_num(pool(x), nan=7.0))
    assert math.isnan(float(fast.flatten()[0]))


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(3, 2, padding=1),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.MaxPool2d(2, dilation=2),
        nn.MaxPool2d(2, return_indices=True),
    ],
)
def test_strided_max_pool_declines_what_it_does_not_compute(pool) -> None:
    assert _strided_max_pool(torch.randn(1, 2, 9, 9), pool) is None


def test_fast_pooling_keeps_gradients_and_restores_the_modules() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.MaxPool2d(3, 2, padding=1))
    x = torch.randn(2, 1, 12, 12, requires_grad=True)
    expected = model(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    with fast_pooling(model):
        assert "forward" in vars(model[1]) and "forward" not in vars(model[2])
        with torch.no_grad():
            assert torch.equal(model(x), expected)
        out = model(x)  # with autograd: torch's own pooling, the same gradient
        (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, expected_grad)
    assert "forward" not in vars(model[1])
