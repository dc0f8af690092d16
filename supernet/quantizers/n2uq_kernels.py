"""Fused CPU kernels (numba) for N2UQ activations: one pass forward, one pass backward.

The torch formulation in :mod:`supernet.quantizers.n2uq_ops` makes about ten passes over an
activation in the forward and six in the backward (lookups, comparisons, two per-bin sums), each
reading and writing the whole tensor; compiled loops do the same work in one pass each way. They
serve contiguous float32 CPU tensors when numba is installed (a dependency of the package); the
torch code stays the reference and the fallback, and the tests hold the two equal.

Tensors of at least :data:`MIN_ELEMENTS_PER_CHUNK` elements per thread are split over
``torch.get_num_threads()`` slices run by numba's parallel mode (its OpenMP layer shares the
process's OpenMP runtime with torch). Run on the calling thread only, the kernels made the
training-step ratio bimodal across processes (1.20–1.57× LSQ+): the single-threaded phases
slowed down whenever the scheduler placed torch's idle OpenMP worker badly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from supernet.quantizers.numba_kernels import NumbaKernels, plain_jit

ROWS = 2
"""Boundaries one grid cell may hold: the forward compares an element with exactly this many."""
FIRST_CELLS_PER_BOUNDARY = 4
"""Grid resolution tried first; doubled (up to :data:`MAX_CELLS`) while a cell holds more."""
MAX_CELLS = 1 << 16
"""Above this the grid stops growing and the caller falls back to torch (very unequal widths)."""
MIN_ELEMENTS_PER_CHUNK = 1 << 16
"""Smaller slices are not worth a parallel region (its start costs about as much)."""
SUM_LANES = 4
"""Interleaved copies of the per-bin sums: a run of elements in one bin (ReLU zeros, clipped
values) then does not chain every add on the previous one."""


def available() -> bool:
    """Whether the compiled kernels can run here: numba importable (imported on first use)."""
    return KERNELS.available()


def _compile(numba: Any) -> dict[str, Any]:
    jit = plain_jit(numba)
    forward_serial = jit(_forward_kernel)
    backward_serial = jit(_backward_kernel)
    parallel_jit = plain_jit(numba, parallel=True)

    # Slices, not index ranges, so that every kernel loop runs from 0 (see _backward_kernel).
    def forward_parallel(
        x: Any, grid_tables: Any, levels: Any, out: Any, counts: Any, chunks: int
    ) -> None:
        before, first, second, scale, shift, top = grid_tables
        size = x.size
        for chunk in numba.prange(chunks):
            low, high = chunk * size // chunks, (chunk + 1) * size // chunks
            forward_serial(
                x[low:high], before, first, second, scale, shift, top, levels,
                out[low:high], counts[low:high],
            )  # fmt: skip

    def backward_parallel(
        grad: Any, x: Any, counts: Any, slope: Any, bins: int, grad_x: Any, sums: Any
    ) -> None:
        size = x.size
        chunks = sums.shape[0]
        for chunk in numba.prange(chunks):
            low, high = chunk * size // chunks, (chunk + 1) * size // chunks
            backward_serial(
                grad[low:high], x[low:high], counts[low:high], slope, bins,
                grad_x[low:high], sums[chunk],
            )  # fmt: skip

    return {
        "forward": forward_serial,
        "backward": backward_serial,
        "forward_parallel": parallel_jit(forward_parallel),
        "backward_parallel": parallel_jit(backward_parallel),
    }


KERNELS = NumbaKernels(_compile, "the N2UQ CPU kernels")


def _chunks(size: int) -> int:
    return max(1, min(torch.get_num_threads(), size // MIN_ELEMENTS_PER_CHUNK))


class Grid:
    """A uniform grid over sorted boundaries that finds ``#{boundaries ≤ x}`` in O(1).

    A boundary in an earlier cell than an element is at most the element, one in a later cell
    is above it (cells come from the same monotone float32 operations for both), so an element
    adds to the count below its cell the comparisons with the at most :data:`ROWS` boundaries
    of its own cell (padded with NaN).
    """

    def __init__(self, boundaries: np.ndarray) -> None:
        self.boundaries = boundaries
        count = boundaries.size
        low, high = boundaries[0], boundaries[-1]
        cells = FIRST_CELLS_PER_BOUNDARY * count
        while True:
            # float32 scalars: the kernel repeats exactly these operations per element.
            self.scale = np.float32(cells) / (high - low) if high > low else np.float32(0.0)
            self.shift = np.float32(1.0) - low * self.scale
            self.top = np.float32(cells + 1)
            boundary_cells = self.cells_of(boundaries)
            per_cell = np.bincount(boundary_cells, minlength=cells + 2)
            if per_cell.max() <= ROWS or cells * 2 > MAX_CELLS:
                break
            cells *= 2
        self.fits = bool(per_cell.max() <= ROWS)
        before = np.cumsum(per_cell) - per_cell
        rank = np.arange(count) - before[boundary_cells]
        # NaN padding: no element compares >= it (+inf padding would count an infinite input).
        in_cell = np.full((ROWS, cells + 2), np.nan, dtype=np.float32)
        if self.fits:
            in_cell[rank, boundary_cells] = boundaries
        self.before = before.astype(np.uint32)
        self.first, self.second = np.ascontiguousarray(in_cell[0]), np.ascontiguousarray(in_cell[1])

    def cells_of(self, values: np.ndarray) -> np.ndarray:
        """The cell of each value (the kernel's arithmetic, vectorised with numpy)."""
        position = values.astype(np.float32) * self.scale + self.shift
        return np.clip(position, np.float32(0.0), self.top).astype(np.int64)


def _forward_kernel(
    x: Any,
    before: Any,
    first: Any,
    second: Any,
    scale: Any,
    shift: Any,
    top: Any,
    levels: Any,
    out: Any,
    counts: Any,
) -> None:
    zero = np.float32(0.0)
    for index in range(x.size):
        value = x[index]
        position = value * scale + shift
        # max(zero, ·) keeps its first argument unless the second is larger, so NaN maps
        # to cell 0 and the conversion below is always defined.
        position = min(max(zero, position), top)
        cell = np.uint32(position)
        # Branch-free: which way each comparison goes is unpredictable.
        count = np.uint32(
            before[cell] + np.uint32(value >= first[cell]) + np.uint32(value >= second[cell])
        )
        counts[index] = count
        out[index] = levels[count]


def _backward_kernel(
    grad: Any,
    x: Any,
    counts: Any,
    slope: Any,
    bins: int,
    grad_x: Any,
    sums: Any,
) -> None:
    # sums[2·(lane·bins + m)] accumulates g and the next slot g·x: one cache line for both.
    # The loop starts at 0: over range(begin, end) LLVM kept a signed-modulo fix-up for the
    # lane and the kernel ran at half speed.
    for index in range(x.size):
        count = np.uint32(counts[index])
        value = grad[index]
        grad_x[index] = slope[count] * value
        slot = np.uint32(2 * ((index % SUM_LANES) * bins + count))
        sums[slot] += value
        sums[slot + 1] += value * x[index]


def count_dtype(boundaries: int) -> type[np.unsignedinteger[Any]]:
    """The counts' dtype for this many boundaries: uint8 up to 255, uint16 above."""
    return np.uint8 if boundaries <= 255 else np.uint16


def forward(
    x: np.ndarray,
    grid: Grid,
    levels: np.ndarray,
    out: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``levels[m]`` and counts ``m = #{boundaries ≤ x}`` of a flat float32 ``x``.

    The counts are uint8 up to 255 boundaries (7 bits), uint16 above: the backward reads them
    back from memory, so their size is part of its cost.

    Args:
        x: contiguous 1-D float32 array.
        grid: the :class:`Grid` of the boundaries (``grid.fits`` must hold).
        levels: float32 output per count, ``boundaries.size + 1`` values.
        out: where to write the outputs (e.g. a torch tensor's memory); a new array if None.
        counts: where to write the counts (of :func:`count_dtype`); a new array if None.
    """
    out = np.empty_like(x) if out is None else out
    counts = np.empty(x.size, dtype=count_dtype(levels.size - 1)) if counts is None else counts
    tables = (grid.before, grid.first, grid.second, grid.scale, grid.shift, grid.top)
    chunks = _chunks(x.size)
    if chunks == 1:
        KERNELS["forward"](x, *tables, levels, out, counts)
    else:
        KERNELS["forward_parallel"](x, tables, levels, out, counts, chunks)
    return out, counts


def backward(
    grad: np.ndarray,
    x: np.ndarray,
    counts: np.ndarray,
    slope: np.ndarray,
    grad_x: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``slope[m]·g`` per element and the per-count sums of ``g`` and ``g·x`` (float64).

    Args:
        grad, x: contiguous 1-D float32 arrays of one size.
        counts: the counts that :func:`forward` returned for ``x``.
        slope: float32 ``∂y/∂x`` per count (``bins`` values).
        grad_x: where to write ``slope[m]·g``; a new array if None.
    """
    bins = slope.size
    grad_x = np.empty_like(grad) if grad_x is None else grad_x
    chunks = _chunks(x.size)
    sums = np.zeros((chunks, SUM_LANES * bins * 2), dtype=np.float64)
    if chunks == 1:
        KERNELS["backward"](grad, x, counts, slope, bins, grad_x, sums[0])
    else:
        KERNELS["backward_parallel"](grad, x, counts, slope, bins, grad_x, sums)
    per_bin = sums.reshape(chunks, SUM_LANES, bins, 2).sum(axis=(0, 1))
    return grad_x, per_bin[:, 0], per_bin[:, 1]
