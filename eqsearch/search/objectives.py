"""Objectives and constraints: what the search optimises and the budgets it meets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.oracle import AccuracyOracle
from eqsearch.space import ConfigBatch

FloatArray = npt.NDArray[np.float64]
BatchFunction = Callable[[ConfigBatch], Any]
"""Takes a batch of configs (a ``ConfigBatch``: arrays, and a ``Sequence[SubnetConfig]``) and
returns one number per config."""

DIRECTIONS = ("max", "min")


def _values(name: str, fn: BatchFunction, batch: ConfigBatch, what: str) -> FloatArray:
    values = np.asarray(fn(batch), dtype=np.float64).reshape(-1)
    if values.shape != (len(batch),):
        raise InputError(
            f"{what} {name!r} returned {values.size} values for a batch of {len(batch)} configs"
        )
    return values


@dataclass(frozen=True)
class Objective:
    """One quantity the search optimises.

    Args:
        name: column name in tables and files.
        fn: a batch of configs -> one value per config.
        direction: ``"max"`` or ``"min"``.
        label: axis label for plots (the name by default).
    """

    name: str
    fn: BatchFunction
    direction: str = "min"
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Objective.name must be a non-empty string; got {self.name!r}")
        if not callable(self.fn):
            raise InputError(f"Objective.fn must be callable; got {self.fn!r}")
        if self.direction not in DIRECTIONS:
            raise InputError(
                f"Objective.direction must be one of {DIRECTIONS}; got {self.direction!r}"
            )

    @property
    def sign(self) -> float:
        """+1 for a minimised objective, -1 for a maximised one (the engines minimise)."""
        return 1.0 if self.direction == "min" else -1.0

    def values(self, batch: ConfigBatch) -> FloatArray:
        """One float per config of ``batch``."""
        return _values(self.name, self.fn, batch, "objective")


@dataclass(frozen=True)
class Constraint:
    """A rule every returned config meets: a config is feasible where ``fn(configs) <= limit``.

    ``fn`` may be any function of the configs: it need not fall as bits go down (a layer that
    keeps at least 4 weight bits is ``fn = -w_bits of that layer, limit = -4``; see
    :func:`at_least` for floors such as an accuracy floor). The search samples configs that
    meet every constraint for its first population and ranks the infeasible ones it breeds
    after the feasible ones by their violation (constraint-domination), so any constraint
    works; a problem where sampling finds no config meeting them all is refused.

    Args:
        name: column name in tables and files.
        fn: a batch of configs -> one value per config.
        limit: the largest allowed value.
        description: what ``fn`` measures, for error messages (the name by default).
        monotone: a promise that ``fn`` never rises when a bit is lowered or the architecture
            shrinks (a cost budget). Repair then lowers genes of over-budget configs until it
            is met, and the lowest-bit subnets decide at once whether it can be met at all.
    """

    name: str
    fn: BatchFunction
    limit: float
    description: str | None = None
    monotone: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Constraint.name must be a non-empty string; got {self.name!r}")
        if not callable(self.fn):
            raise InputError(f"Constraint.fn must be callable; got {self.fn!r}")
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)):
            raise InputError(f"Constraint.limit must be a number; got {limit!r}")
        if not np.isfinite(limit):
            raise InputError(f"Constraint.limit must be finite; got {limit!r}")
        if not isinstance(self.monotone, bool):
            raise InputError(f"Constraint.monotone must be True or False; got {self.monotone!r}")
        object.__setattr__(self, "limit", float(limit))

    def values(self, batch: ConfigBatch) -> FloatArray:
        """One float per config of ``batch``."""
        return _values(self.name, self.fn, batch, "constraint")

    def violation(self, batch: ConfigBatch) -> FloatArray:
        """How far each config exceeds the limit, relative to it (0 where feasible)."""
        excess = np.maximum(self.values(batch) - self.limit, 0.0)
        scaled: FloatArray = excess / max(abs(self.limit), 1e-12)
        return scaled


def total_violation(constraints: Sequence[Constraint], batch: ConfigBatch) -> FloatArray:
    """Summed relative excess over ``constraints`` (0 where a config meets them all)."""
    total = np.zeros(len(batch), dtype=np.float64)
    for constraint in constraints:
        total += constraint.violation(batch)
    return total


def at_least(
    name: str, fn: BatchFunction, minimum: float, description: str | None = None
) -> Constraint:
    """A floor: feasible where ``fn(configs) >= minimum`` (stored as ``-fn <= -minimum``).

    Example: ``at_least("accuracy_floor", oracle.evaluate, 70.0)`` keeps configs of at least
    70 % predicted accuracy; ``at_least("b1_w_bits", lambda batch: batch.w_bits[:, 1], 4)``
    keeps layer 1 at 4 weight bits or more.

    Args:
        name: column name in tables and files.
        fn: a batch of configs -> one value per config.
        minimum: the smallest allowed value.
        description: what ``fn`` measures (the name by default).
    """
    if isinstance(minimum, bool) or not isinstance(minimum, (int, float, np.number)):
        raise InputError(f"the minimum of {name!r} must be a number; got {minimum!r}")

    def negated(batch: ConfigBatch) -> Any:
        return -np.asarray(fn(batch), dtype=np.float64)

    return Constraint(
        name, negated, -float(minimum), f"that is, {description or name} >= {float(minimum):g}"
    )


# -- built-in objectives and budgets -------------------------------------------------------


def accuracy_objective(oracle: AccuracyOracle, name: str = "accuracy") -> Objective:
    """Top-1 accuracy (percent) from any oracle, maximised."""
    return Objective(name, oracle.evaluate, "max", "top-1 accuracy (%)")


def _of_space(cost: Callable[[Any, ConfigBatch], Any]) -> BatchFunction:
    """A cost of ``eqsearch.costs`` as a function of a batch (which knows its space)."""
    return lambda batch: cost(batch.space, batch)


def bitops_objective() -> Objective:
    """BitOPs per image (``Σ MACs·b_w·b_a``), minimised."""
    return Objective("bitops", _of_space(costs.bitops), "min", "BitOPs")


def size_objective() -> Objective:
    """Packed model size in bytes, minimised."""
    return Objective("size_bytes", _of_space(costs.model_size_bytes), "min", "bytes")


def weight_compression_objective() -> Objective:
    """W-Comp (``32·Σn / Σ(n·b_w)``), maximised."""
    return Objective("w_comp", _of_space(costs.weight_compression), "max", "W-Comp")


def activation_compression_objective() -> Objective:
    """A-Comp (``32·Σm / Σ(m·b_a)``), maximised."""
    return Objective("a_comp", _of_space(costs.activation_compression), "max", "A-Comp")


def macs_objective() -> Objective:
    """MACs per image of the architecture alone (a joint space's size), minimised."""
    return Objective("macs", _of_space(costs.macs), "min", "MACs")


def _cost_budget(
    name: str, cost: Callable[[Any, ConfigBatch], Any], limit: float, what: str
) -> Constraint:
    """``cost <= limit``: a monotone budget (lowering a bit never raises a cost)."""
    return Constraint(name, _of_space(cost), limit, what, monotone=True)


def weight_bits_budget(limit: float) -> Constraint:
    """Average weight bits of the searched layers ``<= limit`` (the ``--w-bits`` budget)."""
    return _cost_budget("w_bits", costs.average_weight_bits, limit, "average weight bits")


def activation_bits_budget(limit: float) -> Constraint:
    """Average activation bits of the searched layers ``<= limit`` (the ``--a-bits`` budget)."""
    return _cost_budget("a_bits", costs.average_activation_bits, limit, "average activation bits")


def bitops_budget(limit: float) -> Constraint:
    """BitOPs per image ``<= limit`` (the ``--bitops`` budget; named ``bitops_budget``, so
    that BitOPs can be an objective too)."""
    return _cost_budget("bitops_budget", costs.bitops, limit, "BitOPs")


def size_budget(limit: float) -> Constraint:
    """Packed model size ``<= limit`` bytes (the ``--size`` budget)."""
    return _cost_budget("size_budget", costs.model_size_bytes, limit, "model size in bytes")


def macs_budget(limit: float) -> Constraint:
    """MACs per image of the architecture ``<= limit`` (the ``--macs`` budget)."""
    return _cost_budget("macs_budget", costs.macs, limit, "MACs")


class LatencyModel(Protocol):
    """What the latency objective needs of a table (:class:`eqsearch.latency.LatencyTable`)."""

    @property
    def runtime(self) -> str:
        """The runtime the latencies were measured on."""
        ...

    def predict(self, batch: ConfigBatch) -> FloatArray:
        """Milliseconds per inference of each config of ``batch``."""
        ...


def latency_objective(table: LatencyModel, name: str = "latency") -> Objective:
    """Predicted milliseconds per inference from a measured latency table, minimised."""
    return Objective(name, table.predict, "min", f"latency (ms, {table.runtime})")


def latency_budget(table: LatencyModel, limit_ms: float) -> Constraint:
    """Predicted milliseconds per inference ``<= limit_ms`` (the ``--latency-ms`` budget); not
    monotone in the bits, so decided by sampling rather than repair."""
    return Constraint("latency_budget", table.predict, limit_ms, "latency in ms")
