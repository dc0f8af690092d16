"""A search's front in experiment tracking: JSON lines, TensorBoard or MLflow in its folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eqsearch.app.search_request import SearchRequest
    from eqsearch.pareto import ParetoFront

LOG_BACKENDS = ("jsonl", "tensorboard", "mlflow")
"""What ``nsga --log`` and ``strategy --log`` take (as ``train --log`` does)."""

FRONT_LOG = "front_log.jsonl"
"""The front's JSON lines in the output directory: one per config, then the summary."""


def front_entries(front: ParetoFront, tau: float | None = None) -> list[dict[str, Any]]:
    """The front as log entries: one per config (phase ``front``, its index as the epoch,
    its objective values), then the summary (phase ``search``: the front's size, its
    hypervolume where it has a reference point, τ where verified)."""
    entries: list[dict[str, Any]] = []
    columns = {name: front.column(name) for name in front.objective_names}
    for index in range(len(front)):
        values = {name: float(column[index]) for name, column in columns.items()}
        entries.append({"phase": "front", "epoch": index, **values})
    summary: dict[str, Any] = {"phase": "search", "epoch": 0, "front_size": len(front)}
    reference = _reference_point(front)
    if reference is not None:
        summary["hypervolume"] = front.hypervolume(reference)
    if tau is not None:
        summary["kendall_tau"] = float(tau)
    entries.append(summary)
    return entries


def _reference_point(front: ParetoFront) -> list[float] | None:
    """10 % beyond the front's worst value of each objective, in its own units (None for
    an empty front): the hypervolume then measures the front's spread and every config
    adds to it."""
    if not len(front):
        return None
    signs = [objective.sign for objective in front.objectives]
    nadir = front.minimised().max(axis=0)
    beyond = nadir + 0.1 * abs(nadir) + 1e-9
    return [float(value * sign) for value, sign in zip(beyond, signs, strict=True)]


def log_front(
    front: ParetoFront, out: Path, request: SearchRequest, *, tau: float | None = None
) -> list[Path]:
    """Send the front to ``request.log``'s backends in ``out``; the files written."""
    if not request.log:
        return []
    from supernet.training.tracking import MLFLOW_DB, TENSORBOARD_DIR, RunTracker

    entries = front_entries(front, tau)
    paths: list[Path] = []
    if "jsonl" in request.log:
        from eqsearch.files import atomic_write_text

        text = "".join(json.dumps(entry) + "\n" for entry in entries)
        atomic_write_text(out / FRONT_LOG, text)
        paths.append(out / FRONT_LOG)
    others = [name for name in request.log if name != "jsonl"]
    if others:
        settings: dict[str, Any] = {"supernet": str(request.supernet), "solver": request.solver}
        settings.update(objectives=list(request.objectives), target=request.target)
        tracker = RunTracker(others, out, settings)
        try:
            tracker.log_all(entries)
        finally:
            tracker.close()
        for name, path in (("tensorboard", TENSORBOARD_DIR), ("mlflow", MLFLOW_DB)):
            if name in others:
                paths.append(out / path)
    return paths
