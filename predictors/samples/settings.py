"""Which subnets a samples file holds: the draw's size, seed, strategy, forms and shard."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eqsearch.errors import InputError
from eqsearch.launcher import launch_environment
from predictors.samples.drawing import FORM_DRAWS, STRATEGIES


@dataclass(frozen=True)
class SamplingConfig:
    """Which subnets a samples file holds.

    Args:
        n: number of distinct subnets over all shards.
        seed: seeds the draw; the same seed gives the same configs in the same order.
        strategy: ``"spread"`` (average-bit targets uniform over the space's range, per-layer
            bits drawn around them) or ``"uniform"`` (each layer's bits uniform, independently).
        forms: ``"global"`` (one form per subnet) or ``"per_layer"``.
        shard: ``(i, count)``: this process evaluates rows ``i, i+count, ...``.
    """

    n: int
    seed: int = 0
    strategy: str = "spread"
    forms: str = "global"
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise InputError(f"SamplingConfig.n must be a positive integer; got {self.n!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"SamplingConfig.seed must be an integer; got {self.seed!r}")
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"SamplingConfig.strategy must be one of {', '.join(STRATEGIES)}; "
                f"got {self.strategy!r}"
            )
        if self.forms not in FORM_DRAWS:
            raise InputError(
                f"SamplingConfig.forms must be one of {', '.join(FORM_DRAWS)}; got {self.forms!r}"
            )
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise InputError(
                f"SamplingConfig.shard must be (i, n) with 0 <= i < n; got {self.shard!r}"
            )


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` → ``(1, 4)`` (ValueError for anything else)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise InputError(f"a shard is written i/n with 0 <= i < n (e.g. 0/4); got {text!r}")
    return int(match[1]), int(match[2])


def shard_from_environment() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` of a torchrun launch, else ``(0, 1)``.

    Raises:
        InputError: the variables are malformed (see ``eqsearch.launcher``).
    """
    rank, world = launch_environment()
    return (rank, world) if world > 1 else (0, 1)


def draw_settings(config: SamplingConfig) -> dict[str, Any]:
    return {"n": config.n, "seed": config.seed, "strategy": config.strategy, "forms": config.forms}
