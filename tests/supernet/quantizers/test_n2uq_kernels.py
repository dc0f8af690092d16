"""The compiled N2UQ CPU kernels against the torch reference path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from supernet.quantizers import n2uq_kernels, n2uq_ops
from supernet.quantizers.n2uq import interval_count
from supernet.quantizers.n2uq_ops import merged_boundaries, n2uq_activation


def boundaries_with_neighbours(boundaries: np.ndarray) -> np.ndarray:
    """Every boundary and the float32 values just below and above it."""
    return np.concatenate(
        [
            boundaries,
            np.nextafter(boundaries, np.float32(-np.inf)),
            np.nextafter(boundaries, np.float32(np.inf)),
        ]
    ).astype(np.float32)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_grid_counts_equal_searchsorted_at_and_around_every_boundary(bits: int) -> None:
    rng = np.random.default_rng(bits)
    widths = torch.from_numpy(rng.uniform(0.05, 1.0, interval_count(bits)))
    boundaries = merged_boundaries(torch.tensor([-0.3], dtype=torch.float64), widths)
    boundaries = boundaries.float().numpy()
    grid = n2uq_kernels.Grid(boundaries)
    assert grid.fits
    x = np.concatenate(
        [
            boundaries_with_neighbours(boundaries),
            rng.normal(0, 5, 50_000).astype(np.float32),
            np.array([-np.inf, np.inf, 0.0, -1e30, 1e30], dtype=np.float32),
        ]
    )
    levels = np.arange(boundaries.size + 1, dtype=np.float32) * 0.5
    out, counts = n2uq_kernels.forward(x, grid, levels)
    expected = np.searchsorted(boundaries, x, side="right")
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(out, levels[expected])


def test_grid_grows_for_unequal_widths_and_reports_when_it_cannot() -> None:
    # two boundaries 1e-3 apart among gaps of 1: the first grid puts them in one cell with a
    # third, so it doubles until they separate
    boundaries = np.array([0.0, 1.0, 1.001, 1.002, 2.0, 3.0, 4.0], dtype=np.float32)
    grid = n2uq_kernels.Grid(boundaries)
    assert grid.fits
    assert grid.first.size - 2 > n2uq_kernels.FIRST_CELLS_PER_BOUNDARY * boundaries.size
    x = boundaries_with_neighbours(boundaries)
    _, counts = n2uq_kernels.forward(x, grid, np.zeros(boundaries.size + 1, dtype=np.float32))
    np.testing.assert_array_equal(counts, np.searchsorted(boundaries, x, side="right"))
    # three boundaries within 1e-9 of each other cannot be separated by any grid in the limit
    crowded = np.array([0.0, 1.0, 1.0 + 1e-7, 1.0 + 2e-7, 100.0], dtype=np.float32)
    assert not n2uq_kernels.Grid(crowded).fits


def activation_and_gradients(
    x: torch.Tensor, parameters: list[torch.Tensor], upstream: torch.Tensor, fused: bool
) -> list[torch.Tensor]:
    previous = n2uq_ops.FUSED_KERNELS
    n2uq_ops.FUSED_KERNELS = fused
    try:
        leaf = x.detach().clone().requires_grad_()
        params = [p.detach().clone().requires_grad_() for p in parameters]
        out = n2uq_activation(leaf, *params)
        out.backward(upstream)
    finally:
        n2uq_ops.FUSED_KERNELS = previous
    return [out.detach(), leaf.grad, *(p.grad for p in params)]  # type: ignore[list-item]


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("size", [1000, 300_007])
def test_fused_activation_equals_the_torch_path(bits: int, size: int) -> None:
    generator = torch.Generator().manual_seed(bits)
    n = interval_count(bits)
    parameters = [
        torch.tensor([math.log(3.0 / n)]),
        torch.tensor([math.log(2.5 / n)]),
        torch.tensor([0.2]),
        (torch.rand(n, generator=generator) - 0.5) * 0.8,
    ]
    # ReLU outputs (runs of zeros), values beyond both ends, and a non-contiguous layout
    x = torch.relu(torch.randn(size, 2, generator=generator) * 2).t()
    upstream = torch.randn(2, size, generator=generator)
    fused = activation_and_gradients(x, parameters, upstream, fused=True)
    reference = activation_and_gradients(x, parameters, upstream, fused=False)
    names = ("output", "x", "log_in", "log_out", "start", "log_widths")
    for name, a, b in zip(names, fused, reference, strict=True):
        assert a.shape == b.shape, name
        if name in ("output", "x"):
            assert torch.equal(a, b), name
        else:
            # the kernels sum in float64, the torch path in float32
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-3 * float(b.abs().max())), name


def test_fused_path_is_taken_for_float32_cpu_and_not_for_float64() -> None:
    calls = []
    original = n2uq_kernels.forward

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[0].dtype)
        return original(*args, **kwargs)

    parameters = [torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(3)]
    try:
        n2uq_kernels.forward = spy  # type: ignore[assignment]
        n2uq_activation(torch.randn(10), *parameters)
        n2uq_activation(torch.randn(10, dtype=torch.float64), *(p.double() for p in parameters))
    finally:
        n2uq_kernels.forward = original  # type: ignore[assignment]
    assert calls == [np.float32]
