"""The caching oracle wrapper."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from eqsearch.oracle import AccuracyOracle, CachedOracle
from eqsearch.space import ElasticSpace, SubnetConfig


class CountingOracle:
    """Accuracy = mean weight bits; counts how many configs it was asked for."""

    def __init__(self, space: ElasticSpace) -> None:
        self.space = space
        self.asked = 0

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        batch = self.space.batch(configs)
        self.asked += len(batch)
        return batch.w_bits.mean(axis=1).astype(float)


def test_cached_oracle_asks_once_per_distinct_config(space: ElasticSpace) -> None:
    inner = CountingOracle(space)
    assert isinstance(inner, AccuracyOracle)
    cached = CachedOracle(inner, space)
    batch = space.sample(0, 30)
    doubled = list(batch) + list(batch)[:10]
    first = cached.evaluate(doubled)
    assert inner.asked == len(set(batch.keys()))
    assert np.array_equal(first, inner.evaluate(doubled))
    inner.asked = 0
    again = cached.evaluate(list(batch)[5:20])
    assert inner.asked == 0 and cached.hits >= 15
    assert np.array_equal(again, first[5:20])
    assert len(cached) == len(set(batch.keys()))


def test_cached_oracle_checks_the_answer_length(space: ElasticSpace) -> None:
    class Broken:
        def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
            return np.zeros(1)

    with pytest.raises(ValueError, match="returned"):
        CachedOracle(Broken(), space).evaluate(list(space.sample(1, 3)))
