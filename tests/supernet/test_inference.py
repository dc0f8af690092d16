"""Inference shortcuts: strided max pooling against torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from supernet.evaluation.inference import _strided_max_pool, fast_pooling


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
