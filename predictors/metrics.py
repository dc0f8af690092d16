"""How well predicted accuracies match measured ones: rank correlations, RMSE, top-k precision."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError

ArrayLike = npt.ArrayLike


def _pair(measured: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(measured, dtype=np.float64).ravel()
    guess = np.asarray(predicted, dtype=np.float64).ravel()
    if truth.shape != guess.shape:
        raise InputError(
            f"measured and predicted must have the same length; got {truth.size} and {guess.size}"
        )
    if truth.size < 2:
        raise InputError(f"metrics need at least 2 values; got {truth.size}")
    return truth, guess


def pearson(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Pearson correlation; NaN when either side is constant."""
    truth, guess = _pair(measured, predicted)
    truth_c = truth - truth.mean()
    guess_c = guess - guess.mean()
    denominator = math.sqrt(float((truth_c**2).sum()) * float((guess_c**2).sum()))
    if denominator == 0.0:
        return math.nan
    return float((truth_c * guess_c).sum() / denominator)


def spearman(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Spearman rank correlation (Pearson of average ranks, so ties count as in scipy)."""
    truth, guess = _pair(measured, predicted)
    from scipy import stats  # imported on use: scipy.stats takes ~1 s to import

    return pearson(stats.rankdata(truth), stats.rankdata(guess))


PAIRWISE_KENDALL_MAX = 2048
"""Up to this many values Kendall's τ is counted over every pair in numpy (a few MB at most);
above it scipy's O(n log n) count is used."""


def kendall_tau(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Kendall's τ-b (ties in either ranking accounted for); NaN when either side is constant.

    The same number as ``scipy.stats.kendalltau``: for up to :data:`PAIRWISE_KENDALL_MAX`
    values from the same integer pair counts and the same float operations, without importing
    scipy.stats (~0.7 s, most of what verifying a front in a command took besides measuring).
    """
    truth, guess = _pair(measured, predicted)
    if truth.size > PAIRWISE_KENDALL_MAX:
        from scipy import stats

        return float(stats.kendalltau(truth, guess).statistic)
    if np.isnan(truth).any() or np.isnan(guess).any():
        return math.nan
    upper = np.triu_indices(truth.size, k=1)
    truth_order = np.sign(truth[:, None] - truth[None, :])[upper].astype(np.int64)
    guess_order = np.sign(guess[:, None] - guess[None, :])[upper].astype(np.int64)
    pairs = truth.size * (truth.size - 1) // 2
    truth_ties = int((truth_order == 0).sum())
    guess_ties = int((guess_order == 0).sum())
    if truth_ties == pairs or guess_ties == pairs:
        return math.nan
    concordant_minus_discordant = int((truth_order * guess_order).sum())
    tau = concordant_minus_discordant / np.sqrt(pairs - truth_ties) / np.sqrt(pairs - guess_ties)
    return float(np.minimum(1.0, max(-1.0, tau)))


def rmse(measured: ArrayLike, predicted: ArrayLike) -> float:
    """Root mean squared error, in the units of the values (accuracy points)."""
    truth, guess = _pair(measured, predicted)
    return float(np.sqrt(np.mean((truth - guess) ** 2)))


def top_k_precision(measured: ArrayLike, predicted: ArrayLike, fraction: float = 0.1) -> float:
    """Share of the predicted top ``fraction`` that is also in the measured top ``fraction``.

    ``k = max(1, round(fraction · n))``. A config counts as in the measured top k when its
    measured value reaches the k-th best one (ties at the boundary all count).
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1]; got {fraction}")
    truth, guess = _pair(measured, predicted)
    k = max(1, round(fraction * truth.size))
    threshold = np.sort(truth)[::-1][k - 1]
    chosen = np.argsort(-guess, kind="stable")[:k]
    return float((truth[chosen] >= threshold).mean())


def prediction_metrics(
    measured: ArrayLike, predicted: ArrayLike, *, top_fraction: float = 0.1
) -> dict[str, float]:
    """Every metric at once: ``kendall_tau``, ``spearman``, ``pearson``, ``rmse``, ``top10``.

    The last key is named after ``top_fraction`` (``top10`` for 0.1).
    """
    key = f"top{round(top_fraction * 100)}"
    return {
        "kendall_tau": kendall_tau(measured, predicted),
        "spearman": spearman(measured, predicted),
        "pearson": pearson(measured, predicted),
        "rmse": rmse(measured, predicted),
        key: top_k_precision(measured, predicted, top_fraction),
    }
