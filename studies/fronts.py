"""Measured (accuracy, BitOPs) points: their hypervolume on a log-BitOPs scale and the
non-dominated ones, as the strategies and joint-search studies score their fronts."""

from __future__ import annotations

import math

import numpy as np

from eqsearch.pareto import hypervolume


def log_hypervolume(
    accuracy: np.ndarray, bitops: np.ndarray, reference: tuple[float, float]
) -> float:
    """Hypervolume of measured (accuracy, BitOPs) points in accuracy points × decades of
    BitOPs up to ``reference`` = (accuracy, BitOPs); a decade of cheap configs counts
    as much as one of expensive ones."""
    if len(accuracy) == 0:
        return 0.0
    points = np.column_stack([-np.asarray(accuracy), np.log10(np.asarray(bitops))])
    return hypervolume(points, (-reference[0], math.log10(reference[1])))


def non_dominated_rows(accuracy: np.ndarray, bitops: np.ndarray) -> np.ndarray:
    """Rows of the measured points no other point beats (higher accuracy at no more BitOPs),
    in increasing BitOPs."""
    order = np.lexsort((-accuracy, bitops))
    kept, best = [], -math.inf
    for row in order:
        if accuracy[row] > best:
            kept.append(row)
            best = accuracy[row]
    return np.asarray(kept, dtype=np.int64)
