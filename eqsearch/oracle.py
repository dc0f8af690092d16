"""What the search asks for accuracy: the AccuracyOracle protocol and a caching wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, SubnetConfig

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class AccuracyOracle(Protocol):
    """Anything that scores subnets: the supernet itself, or a predictor.

    ``evaluate`` takes a batch of configs (a list, or a ``ConfigBatch`` whose arrays a fast
    oracle can read directly) and returns one accuracy (in percent) per config.
    """

    def evaluate(self, configs: Sequence[SubnetConfig]) -> FloatArray: ...


class CachedOracle:
    """Wraps an oracle so that each distinct config is evaluated once.

    Args:
        oracle: the oracle to ask for configs not yet seen.
        space: the space the configs belong to (keys are built from its arrays).
    """

    def __init__(self, oracle: AccuracyOracle, space: ElasticSpace) -> None:
        self.oracle = oracle
        self.space = space
        self._cache: dict[bytes, float] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def evaluate(self, configs: Sequence[SubnetConfig]) -> FloatArray:
        """Accuracies of ``configs``; asks the wrapped oracle only for unseen ones, once each."""
        batch = self.space.batch(configs)
        keys = batch.keys()
        result = np.empty(len(keys), dtype=np.float64)
        missing: dict[bytes, list[int]] = {}
        for row, key in enumerate(keys):
            value = self._cache.get(key)
            if value is None:
                missing.setdefault(key, []).append(row)
            else:
                result[row] = value
        self.hits += len(keys) - sum(len(rows) for rows in missing.values())
        if missing:
            first_rows = [rows[0] for rows in missing.values()]
            values = np.asarray(self.oracle.evaluate(batch.take(first_rows)), dtype=np.float64)
            if values.shape != (len(first_rows),):
                raise InputError(
                    f"the oracle returned {values.shape} values for {len(first_rows)} configs"
                )
            self.misses += len(first_rows)
            for (key, rows), value in zip(missing.items(), values.tolist(), strict=True):
                self._cache[key] = value
                result[rows] = value
        return result
