"""N2UQ fake quantization as autograd Functions: G-STE activations and entropy-preserving weights.

Activations (one bit width, ``n = 2^b − 1`` intervals), in input units ``u = x / α_in``:
edges ``d_0 = s``, ``d_i = s + Σ_(j≤i) a_j``; thresholds at the interval midpoints
``T_i = d_(i−1) + a_i / 2``; the level ``k = #{i : T_i ≤ u}`` in ``0..n`` and the output
``y = α_in·s + α_out·k`` (uniform output levels ``α_out`` apart, the lowest one at the start).

Backward, the generalized straight-through estimator: on the interval ``[d_(i−1), d_i)`` the
level is replaced by the surrogate ``F(u) = (u − d_(i−1)) / a_i + i − 1``, so
``∂F/∂u = 1/a_i``, ``∂F/∂a_i = −(u − d_(i−1))/a_i²``, ``∂F/∂a_j = −1/a_i`` for ``j < i`` and
``∂F/∂s = −1/a_i``; all zero outside ``[d_0, d_n]``. The output offset ``α_in·s`` and the
output scale ``α_out`` enter exactly (``∂y/∂α_out = k``). With equal widths this is the clipped
straight-through estimator of a uniform quantizer.

Speed: one merged sorted list of edges and thresholds ``B`` (``2n + 1`` values) gives, per
element, ``m = #{B_j ≤ x}`` (int32); the level is ``m // 2``, the interval ``(m + 1) // 2``. Every
parameter gradient is a small function of two per-``m`` sums (of ``g`` and ``g·x``), so the
backward makes a few passes over the tensor however many levels there are. ``torch.bucketize``
costs a binary search with unpredictable branches per element (30–90 ns on a CPU); on CPUs ``m``
comes from a uniform cell grid over ``B`` instead (a table lookup and a comparison or two).
For float32 CPU tensors the same computation runs as compiled one-pass kernels
(:mod:`supernet.quantizers.n2uq_kernels`); the torch code here is their reference and serves
GPUs, other dtypes and grids too crowded for the kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from supernet.quantizers import n2uq_kernels
from supernet.quantizers.base import compute_dtype
from supernet.runtime import host_path

CELLS_PER_BOUNDARY = 4
"""Cells of the CPU lookup grid per boundary: a cell then rarely holds more than one."""
MAX_BOUNDARIES_PER_CELL = 4
"""Beyond this many boundaries in one cell (very unequal widths) the lookup uses bucketize."""


def merged_boundaries(start: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """``[d_0, T_1, d_1, T_2, …, T_n, d_n]`` (input units) from the start and the widths."""
    edges = torch.cat([start.reshape(1), start.reshape(1) + torch.cumsum(widths, 0)])
    thresholds = edges[:-1] + widths / 2
    interleaved = torch.stack([edges[:-1], thresholds], dim=1).reshape(-1)
    return torch.cat([interleaved, edges[-1:]])


def _grid_counts(x: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor | None:
    """``#{B_j ≤ x}`` per element by a uniform cell grid (None when a cell is too crowded).

    Elements and boundaries go through the same monotone float operations to a cell, so a
    boundary in an earlier cell is ≤ the element, one in a later cell is >, and only the
    boundaries sharing the element's cell need comparing. Lookups use int32 indices and
    ``index_select`` (several times faster on CPUs than int64 ``take`` or indexing).
    """
    count = boundaries.numel()
    cells = CELLS_PER_BOUNDARY * count
    low, high = float(boundaries[0]), float(boundaries[-1])
    if not high > low:
        return None
    scale = cells / (high - low)
    shift = 1.0 - low * scale

    def cell(values: torch.Tensor) -> torch.Tensor:
        # Non-negative after the clamp, so the integer conversion is a floor.
        return torch.mul(values, scale).add_(shift).clamp_(0, cells + 1).int()

    boundary_cells = cell(boundaries).long()
    per_cell = torch.bincount(boundary_cells, minlength=cells + 2)
    crowding = int(per_cell.max())
    if crowding > MAX_BOUNDARIES_PER_CELL:
        return None
    before = torch.cumsum(per_cell, 0) - per_cell
    rank = torch.arange(count, device=boundaries.device) - before[boundary_cells]
    # NaN padding: no element compares >= it (+inf padding would count an infinite input).
    in_cell = boundaries.new_full((crowding, cells + 2), float("nan"))
    in_cell[rank, boundary_cells] = boundaries
    flat = x.reshape(-1)
    position = torch.mul(flat, scale).add_(shift).clamp_(0, cells + 1)
    index = position.int()
    # Float counts (exact up to 511) take comparisons written straight to float: a bool
    # tensor added to an integer one costs several times more on CPUs. The position buffer
    # is reused for the looked-up boundaries and the comparisons (fewer fresh pages).
    counts = before.float().index_select(0, index)
    work = position if position.dtype == flat.dtype else torch.empty_like(flat)
    for row in in_cell:
        torch.index_select(row.to(flat.dtype), 0, index, out=work)
        counts += torch.ge(flat, work, out=work)
    return counts.int().view(x.shape)


def boundary_counts(x: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """``m = #{B_j ≤ x}`` per element (int32), for sorted ``boundaries`` of ``x``'s dtype."""
    if host_path(x):
        counts = _grid_counts(x, boundaries)
        if counts is not None:
            return counts
    return torch.bucketize(x, boundaries, right=True, out_int32=True)


SUM_LANES = 8
"""Per-bin sums accumulate into this many interleaved copies of every bin."""


def _spread_bins(counts: torch.Tensor, bins: int) -> torch.Tensor:
    # A run of elements in one bin (ReLU zeros, clipped values) makes bincount add into one
    # address back to back, each add waiting for the last (≈4× slower than scattered bins);
    # giving consecutive elements separate copies of the bins breaks that chain.
    if counts.numel() % SUM_LANES:
        return counts
    lanes = torch.arange(SUM_LANES, dtype=counts.dtype, device=counts.device) * bins
    return (counts.view(-1, SUM_LANES) + lanes).view(-1)


def _bin_sums(spread: torch.Tensor, weights: torch.Tensor, bins: int) -> torch.Tensor:
    lanes = SUM_LANES if spread.numel() % SUM_LANES == 0 else 1
    if host_path(spread):
        sums = torch.bincount(spread, weights=weights, minlength=lanes * bins)
    else:  # CUDA's bincount reads the largest count back to size its output: a host sync
        sums = weights.new_zeros(lanes * bins).index_add_(0, spread, weights)
    return sums.view(lanes, bins).sum(0)


_TORCH_DTYPES = {np.uint8: torch.uint8, np.uint16: torch.uint16}
FUSED_KERNELS = True
"""Use the compiled CPU kernels where they serve (tests switch this off to run the torch path)."""


def _fused_kernels_serve(x: torch.Tensor) -> bool:
    return FUSED_KERNELS and host_path(x) and x.dtype == torch.float32 and n2uq_kernels.available()


class _N2uqActivation(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        log_in_scale: torch.Tensor,
        log_out_scale: torch.Tensor,
        start: torch.Tensor,
        log_widths: torch.Tensor,
    ) -> torch.Tensor:
        in_scale = log_in_scale.detach().exp()
        out_scale = log_out_scale.detach().exp()
        widths = log_widths.detach().exp()
        start_value = start.detach()
        boundaries = (merged_boundaries(start_value, widths) * in_scale).to(x.dtype)
        levels = torch.arange(boundaries.numel() + 1, device=x.device) // 2
        outputs = (levels * out_scale + in_scale * start_value).to(x.dtype)
        ctx.fused = False
        if _fused_kernels_serve(x):
            grid = n2uq_kernels.Grid(boundaries.numpy())
            if grid.fits:
                flat = x.detach().contiguous().reshape(-1)
                # torch's allocator aligns to 64 bytes, numpy's to 16; oneDNN convolutions and
                # the other ops that read these tensors are slower on the latter.
                result = torch.empty_like(flat)
                count_dtype = n2uq_kernels.count_dtype(boundaries.numel())
                counts = torch.empty(flat.numel(), dtype=_TORCH_DTYPES[count_dtype])
                n2uq_kernels.forward(
                    flat.numpy(), grid, outputs.numpy(), out=result.numpy(), counts=counts.numpy()
                )
                ctx.fused = True
                ctx.save_for_backward(flat, counts, in_scale, out_scale, start_value, widths)
                return result.view(x.shape)
        counts = boundary_counts(x, boundaries)
        ctx.save_for_backward(x, counts, in_scale, out_scale, start_value, widths)
        return outputs.index_select(0, counts.reshape(-1)).view(x.shape)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = grads
        x, counts, in_scale, out_scale, start, widths = ctx.saved_tensors
        n = widths.numel()
        bins = 2 * n + 2
        # ∂y/∂x per m: α_out / (α_in·a_i) inside interval i, zero below d_0 and from d_n on.
        inner = out_scale / widths
        slope = torch.zeros(bins, dtype=widths.dtype, device=widths.device)
        slope[1 : 2 * n + 1] = (inner / in_scale).repeat_interleave(2)
        if ctx.fused:
            flat_grad = grad.contiguous().reshape(-1).float()
            flat_grad_x = torch.empty_like(flat_grad)
            _, grad_sum_array, moment_sum_array = n2uq_kernels.backward(
                flat_grad.numpy(),
                x.numpy(),
                counts.numpy(),
                slope.float().numpy(),
                grad_x=flat_grad_x.numpy(),
            )
            grad_x = flat_grad_x.view(grad.shape)
            if not any(ctx.needs_input_grad[1:]):
                return grad_x, None, None, None, None
            grad_sums = torch.from_numpy(grad_sum_array).to(widths.dtype)
            moment_sums = torch.from_numpy(moment_sum_array).to(widths.dtype)
        else:
            flat_counts = counts.reshape(-1)
            grad_x = slope.to(grad.dtype).index_select(0, flat_counts).view(grad.shape).mul_(grad)
            if not any(ctx.needs_input_grad[1:]):
                return grad_x, None, None, None, None
            flat_grad = grad.reshape(-1).to(widths.dtype)
            spread = _spread_bins(flat_counts, bins)
            grad_sums = _bin_sums(spread, flat_grad, bins)
            moment_sums = _bin_sums(spread, flat_grad * x.reshape(-1).to(widths.dtype), bins)
        grad_total = grad_sums.sum()
        per_interval = grad_sums[1 : 2 * n + 1].reshape(n, 2).sum(1)
        moment_interval = moment_sums[1 : 2 * n + 1].reshape(n, 2).sum(1)
        edges_before = start + torch.cumsum(widths, 0) - widths
        weighted = inner * per_interval  # Σ over interval i of g·α_out/a_i
        later = torch.flip(torch.cumsum(torch.flip(weighted, [0]), 0), [0]) - weighted
        grad_widths = -inner / widths * (moment_interval / in_scale - edges_before * per_interval)
        grad_widths = grad_widths - later
        grad_start = in_scale * grad_total - weighted.sum()
        grad_in = start * grad_total - (inner * moment_interval).sum() / in_scale**2
        levels = torch.arange(bins, device=widths.device, dtype=widths.dtype).div_(2).floor_()
        grad_out = (levels * grad_sums).sum()
        return (
            grad_x,
            (grad_in * in_scale).reshape(1),
            (grad_out * out_scale).reshape(1),
            grad_start.reshape(1),
            grad_widths * widths,
        )


def n2uq_activation(
    x: torch.Tensor,
    log_in_scale: torch.Tensor,
    log_out_scale: torch.Tensor,
    start: torch.Tensor,
    log_widths: torch.Tensor,
) -> torch.Tensor:
    """N2UQ activation quantization with the generalized straight-through estimator.

    Args:
        x: the activation (any shape).
        log_in_scale: ``log α_in`` (shape ``(1,)``): input units ``u = x / α_in``.
        log_out_scale: ``log α_out`` (shape ``(1,)``): the uniform output step.
        start: ``s`` (shape ``(1,)``, input units): the lowest edge ``d_0``.
        log_widths: ``log a_i`` of the ``2^b − 1`` interval widths (input units).

    Returns:
        ``α_in·s + α_out·k`` with ``k`` the number of interval midpoints at or below ``u``,
        in at least float32 (a bfloat16 activation under autocast is quantized from its
        exact float32 value: in its own precision the thresholds would merge and levels
        vanish).
    """
    x = x.to(compute_dtype(x.dtype))
    return _N2uqActivation.apply(x, log_in_scale, log_out_scale, start, log_widths)  # type: ignore[no-any-return]


def weight_gamma(bits: int) -> float:
    """N2UQ's γ_b = (2^b − 1) / 2^(b−1): with it, uniform weights fill every level equally."""
    return (2**bits - 1) / 2 ** (bits - 1)


class _N2uqWeight(torch.autograd.Function):
    # On the scale W/δ (δ = 2α/(2^b−1) the level spacing) the levels are the half-integers
    # ±1/2 … ±(2^b−1)/2 and the clipping bounds ±(2^b−1)/2 are constants for every channel.

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, bits: int) -> torch.Tensor:  # type: ignore[override]
        channels = weight.shape[0]
        flat = weight.detach().reshape(channels, -1)
        scale = flat.abs().mean(dim=1).mul_(weight_gamma(bits)).clamp_min_(1e-12)
        spacing = scale * (2.0 / (2**bits - 1))
        view = (-1,) + (1,) * (weight.dim() - 1)
        scaled = weight * torch.reciprocal(spacing).view(view)
        half = 2 ** (bits - 1)
        ctx.save_for_backward(scale)
        return torch.floor(scaled).clamp_(-half, half - 1).add_(0.5).mul_(spacing.view(view))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        # The official N2UQ passes the straight-through gradient of the normalised weight
        # W/α to every weight, clipped or not (at init 13–23 % of weights lie outside ±α and
        # would otherwise never move): ∂L/∂W = g/α per output channel.
        (grad,) = grads
        (scale,) = ctx.saved_tensors
        view = (-1,) + (1,) * (grad.dim() - 1)
        return grad / scale.to(grad.dtype).view(view), None


def n2uq_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel N2UQ weight quantization onto 2^b uniform levels without zero.

    The scale ``α = γ_b·mean|W|`` per output channel (dim 0) is detached; ``W/α`` is clipped to
    ±1 and rounded to the levels ``±1/(2^b−1), ±3/(2^b−1), …, ±1``. The gradient is the
    official N2UQ's: straight-through on the normalised weight ``W/α``, so ``∂L/∂W = g/α`` per
    output channel, inside the clipping range or not.
    """
    return _N2uqWeight.apply(weight, bits)  # type: ignore[no-any-return]
