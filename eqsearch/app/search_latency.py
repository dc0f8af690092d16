"""The latency of a search: the table beside its checkpoint, and its front measured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.errors import InputError

if TYPE_CHECKING:
    from eqsearch.latency.table import LatencyTable
    from eqsearch.pareto import ParetoFront
    from eqsearch.space import ElasticSpace

TABLE_PREFIX = "latency-"
"""A latency table's file name beside a checkpoint: ``latency-RUNTIME.json``."""


def load_latency_table(
    path: str | None, supernet: str | Path, space: ElasticSpace, *, needed: bool
) -> LatencyTable | None:
    """The ``--latency-table`` of a search (default: the one table beside the checkpoint),
    checked against ``space``; None where no latency is asked for.

    Raises:
        InputError: a latency objective or budget without a table, a table that is not one,
            or one of another space.
    """
    from eqsearch.latency.table import LatencyTable

    if path is None and not needed:
        return None
    if path is None:
        found = sorted(Path(supernet).parent.glob(f"{TABLE_PREFIX}*.json"))
        if len(found) != 1:
            where = Path(supernet).parent
            raise InputError(
                "latency needs --latency-table: "
                + (
                    f"{len(found)} tables lie beside the checkpoint"
                    if found
                    else f"none lies in {where}; build one with `eqsearch latency build "
                    f"--supernet {supernet}`"
                )
            )
        path = str(found[0])
    table = LatencyTable.load(path)
    table.check_space(space, source=path)
    return table


def measure_front_latency(
    front: ParetoFront, supernet: Any, table: LatencyTable, indices: list[int], repeats: int = 10
) -> ParetoFront:
    """``front`` with ``measured_latency_ms`` of the configs at ``indices``: each exported
    for the table's runtime and timed in interleaved rounds with the table's settings."""
    from eqsearch.latency.settings import LatencySettings
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.exporting import runtime_graph
    from supernet.deployment.runtimes.latency_build import measure_wall

    runtime = get_runtime(table.key.runtime)
    settings = LatencySettings(threads=table.key.threads, batch=table.key.batch, repeats=repeats)
    graphs = [runtime_graph(supernet, front.configs[i], runtime) for i in indices]
    measured, _ = measure_wall(runtime, supernet, graphs, settings)
    return front.with_column("measured_latency_ms", measured, indices)
