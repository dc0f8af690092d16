"""How a latency table is measured: threads, batch, repeats and the subnets timed."""

from __future__ import annotations

from dataclasses import dataclass

from eqsearch.errors import InputError, require_positive_integers


@dataclass(frozen=True)
class LatencySettings:
    """How a latency table is measured.

    Args:
        threads: the runtime's intra-op threads.
        batch: images per inference.
        repeats: profiled runs and timed rounds of every measured subnet.
        holdout: random whole subnets measured to state the table's error (not fitted on).
        calibration: random whole subnets (others) whose latency calibrates the sum of layer
            times (0: the designed subnets calibrate it).
        seed: seeds the designed, calibration and held-out subnets and the timing order.
        candidates: random architectures the greedy shape cover picks each subnet from.
    """

    threads: int = 2
    batch: int = 1
    repeats: int = 10
    holdout: int = 50
    calibration: int = 12
    seed: int = 0
    candidates: int = 256

    def __post_init__(self) -> None:
        require_positive_integers(self, ("threads", "batch", "repeats", "candidates"))
        for name in ("holdout", "calibration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be an integer >= 0; got {value!r}")
