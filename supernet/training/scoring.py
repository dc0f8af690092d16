"""Subnets scored during training: the epoch-0 entry and the held-out accuracy between epochs."""

from __future__ import annotations

import time
from typing import Any

from eqsearch.space import SubnetConfig
from supernet.data.images import ImageSource
from supernet.evaluation.oracle import measure_accuracy
from supernet.networks.elastic import Supernet
from supernet.training.distributed import Distributed, shared_accuracy


def start_entry(
    supernet: Supernet, holdout: ImageSource, calibration: ImageSource, dist: Distributed
) -> dict[str, Any]:
    """The epoch-0 log entry: held-out accuracy at full precision and of the space's highest
    and lowest uniform subnets (largest and smallest architecture), before any supernet step."""
    space = supernet.space
    form = space.forms[0]
    high = (max(space.w_bits), max(space.a_bits))
    low = (min(space.w_bits), min(space.a_bits))
    start = time.perf_counter()
    entry: dict[str, Any] = {"phase": "start", "epoch": 0}
    entry["acc_fp"] = epoch_accuracy(supernet, None, holdout, calibration, dist)
    entry["acc_largest"] = epoch_accuracy(
        supernet, space.uniform(*high, form, arch="largest"), holdout, calibration, dist
    )
    entry["acc_smallest"] = epoch_accuracy(
        supernet, space.uniform(*low, form, arch="smallest"), holdout, calibration, dist
    )
    entry["bits_largest"] = list(high)
    entry["bits_smallest"] = list(low)
    entry["seconds"] = time.perf_counter() - start
    return entry


def start_accuracies(entry: dict[str, Any]) -> list[tuple[str, float]]:
    """``(label, accuracy)`` of an epoch-0 entry: ``FP``, ``W8A8``, ``W2A2`` (its bits)."""
    high, low = entry["bits_largest"], entry["bits_smallest"]
    return [
        ("FP", float(entry["acc_fp"])),
        (f"W{high[0]}A{high[1]}", float(entry["acc_largest"])),
        (f"W{low[0]}A{low[1]}", float(entry["acc_smallest"])),
    ]


def epoch_accuracy(
    supernet: Supernet,
    subnet: SubnetConfig | None,
    holdout: ImageSource,
    calibration: ImageSource,
    dist: Distributed,
) -> float:
    """A subnet's held-out accuracy between epochs, the images shared out over the ranks
    (each re-calibrates BN on every calibration image, then scores its part: whole batches
    of the held-out source, the batches one process would score)."""

    def score(start: int, stop: int) -> float:
        part = holdout if (start, stop) == (0, len(holdout)) else holdout.subset(range(start, stop))
        return measure_accuracy(supernet, subnet, part, calibration)

    return shared_accuracy(score, len(holdout), dist, batch_size=holdout.batch_size)
