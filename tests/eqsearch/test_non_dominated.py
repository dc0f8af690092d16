"""The library's non-dominated filter and hypervolume against straightforward references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eqsearch.pareto import hypervolume, non_dominated


def pairwise_non_dominated(points: np.ndarray) -> np.ndarray:
    """The filter eqsearch used before moocore: a row survives unless another row is no worse
    in every objective and better in one (so exact duplicates all survive)."""
    no_worse = np.all(points[None, :, :] <= points[:, None, :], axis=2)
    better = np.any(points[None, :, :] < points[:, None, :], axis=2)
    return ~np.any(no_worse & better, axis=1)


def box_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume by inclusion of grid cells: exact for points on a small integer grid."""
    axes = [np.arange(0, int(r)) for r in reference]
    volume = 0
    for cell in itertools.product(*axes):
        corner = np.asarray(cell, dtype=np.float64)
        volume += bool(np.any(np.all(points <= corner, axis=1)))
    return float(volume)


@pytest.mark.parametrize("objectives", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_rows_as_the_pairwise_filter_with_ties(objectives: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # few distinct values per column: many ties and exact duplicates
    points = rng.integers(0, 6, size=(600, objectives)).astype(np.float64)
    points[300:400] = points[:100]
    points[:, 0] *= -1.5
    expected = pairwise_non_dominated(points)
    np.testing.assert_array_equal(non_dominated(points), expected)


def test_continuous_points_and_empty_input() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(2000, 3))
    np.testing.assert_array_equal(non_dominated(points), pairwise_non_dominated(points))
    assert non_dominated(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match=r"\(n, m\)"):
        non_dominated(np.zeros(4))


@pytest.mark.parametrize("objectives", [2, 3, 4])
def test_hypervolume_equals_counting_grid_cells(objectives: int) -> None:
    rng = np.random.default_rng(objectives)
    points = rng.integers(0, 5, size=(30, objectives)).astype(np.float64)
    reference = np.full(objectives, 5.0)
    # points on the reference's boundary add nothing; dominated and repeated points nothing
    points[0] = 5.0
    assert hypervolume(points, reference) == box_hypervolume(points[1:], reference)
