"""Interleaved repeated timing of several loaded models: medians and spread per model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from supernet.deployment.runtimes.base import RuntimeSession

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Timing:
    """Milliseconds per inference: ``samples[i, r]`` of session ``i`` in round ``r``."""

    samples: FloatArray

    @property
    def median_ms(self) -> FloatArray:
        """Each session's median."""
        result: FloatArray = np.median(self.samples, axis=1)
        return result

    @property
    def spread(self) -> FloatArray:
        """Each session's inter-quartile range relative to its median."""
        low, high = np.percentile(self.samples, [25, 75], axis=1)
        result: FloatArray = (high - low) / np.maximum(self.median_ms, 1e-12)
        return result


def interleaved_timing(
    sessions: Sequence[RuntimeSession],
    repeats: int,
    *,
    warmup: int = 2,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Timing:
    """Time every session ``repeats`` times in rounds, each round in a new random order.

    Interleaving spreads a busy minute of the machine over every session alike instead of
    slowing the ones that happened to run in it; the order is shuffled so that no session
    always follows the same one. ``warmup`` untimed runs each first, and one untimed run
    before every timed one: the timed run then finds the model's weights in the caches, as a
    deployed model running inference after inference does, however many other models the
    round visited in between (timed cold, 50 held-out ResNet-18 subnets in one round came out
    25 % off a table calibrated on rounds of 29).
    """
    for session in sessions:
        for _ in range(warmup):
            session.run()
    rng = np.random.default_rng(seed)
    samples = np.zeros((len(sessions), repeats), dtype=np.float64)
    for round_index in range(repeats):
        for index in rng.permutation(len(sessions)):
            sessions[index].run(record=False)
            start = time.perf_counter()
            sessions[index].run(record=False)
            samples[index, round_index] = (time.perf_counter() - start) * 1e3
        if progress is not None:
            progress(round_index + 1, repeats)
    return Timing(samples)
