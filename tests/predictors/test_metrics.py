"""Metrics against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from predictors.metrics import (
    kendall_tau,
    pearson,
    prediction_metrics,
    rmse,
    spearman,
    top_k_precision,
)


def test_correlations_match_scipy_including_ties() -> None:
    rng = np.random.default_rng(0)
    truth = np.round(rng.normal(97.5, 0.4, 200), 1)  # coarse values: many ties
    guess = truth + rng.normal(0, 0.3, 200)
    assert pearson(truth, guess) == pytest.approx(stats.pearsonr(truth, guess).statistic, abs=1e-12)
    assert spearman(truth, guess) == pytest.approx(
        stats.spearmanr(truth, guess).statistic, abs=1e-12
    )
    assert kendall_tau(truth, guess) == pytest.approx(
        stats.kendalltau(truth, guess).statistic, abs=1e-12
    )


@pytest.mark.parametrize("size", [2, 3, 12, 200, 2048, 2049])
def test_kendall_tau_is_scipys_number_exactly_with_ties_and_constants(size: int) -> None:
    rng = np.random.default_rng(size)
    truth = np.round(rng.normal(97.5, 0.4, size), 1)
    guess = np.round(truth + rng.normal(0, 0.3, size), 1)
    for left, right in ((truth, guess), (guess, truth), (truth, -guess), (truth, truth)):
        assert kendall_tau(left, right) == stats.kendalltau(left, right).statistic
    assert math.isnan(kendall_tau(truth, np.full(size, 1.0)))
    with_nan = truth.copy()
    with_nan[0] = math.nan
    assert math.isnan(kendall_tau(with_nan, guess))


def test_hand_computed_values() -> None:
    truth = [1.0, 2.0, 3.0, 4.0]
    guess = [1.0, 3.0, 2.0, 5.0]
    assert rmse(truth, guess) == pytest.approx(math.sqrt((0 + 1 + 1 + 1) / 4))
    assert kendall_tau(truth, guess) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert spearman(truth, guess) == pytest.approx(0.8)
    # top half: measured {3, 4} (values 3.0, 4.0); predicted picks rows 3 and 1 -> one of two
    assert top_k_precision(truth, guess, 0.5) == 0.5
    assert top_k_precision(truth, guess, 0.25) == 1.0
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert set(prediction_metrics(truth, guess)) == {
        "kendall_tau",
        "spearman",
        "pearson",
        "rmse",
        "top10",
    }


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"same length"):
        rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"fraction"):
        top_k_precision([1.0, 2.0], [1.0, 2.0], 0.0)
