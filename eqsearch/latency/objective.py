"""Latency in the search: a measured table as an objective or a budget."""

from __future__ import annotations

from eqsearch.latency.table import LatencyTable
from eqsearch.search.objectives import Constraint, Objective


def latency_objective(table: LatencyTable, name: str = "latency") -> Objective:
    """Predicted milliseconds per inference from a measured :class:`LatencyTable`, minimised."""
    return Objective(name, table.predict, "min", f"latency (ms, {table.key.runtime})")


def latency_budget(table: LatencyTable, limit_ms: float) -> Constraint:
    """Predicted milliseconds per inference ``<= limit_ms`` (the ``--latency-ms`` budget)."""
    return Constraint("latency_budget", table.predict, limit_ms, "latency in ms")
