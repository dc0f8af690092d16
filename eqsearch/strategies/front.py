"""A strategy's candidates → the same ParetoFront the NSGA-II engines return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.pareto import FrontObjective, ParetoFront, non_dominated
from eqsearch.problem import SearchProblem
from eqsearch.space import ConfigBatch


def distinct(batch: ConfigBatch) -> ConfigBatch:
    """The batch without repeated configs (first occurrences, in order)."""
    seen: set[bytes] = set()
    keep = []
    for row, key in enumerate(batch.keys()):
        if key not in seen:
            seen.add(key)
            keep.append(row)
    return batch.take(np.asarray(keep, dtype=np.int64))


def concatenate(batches: Sequence[ConfigBatch]) -> ConfigBatch:
    """One batch of the rows of ``batches`` (of one space), in order."""
    if not batches:
        raise InputError("concatenate needs at least one batch")
    return ConfigBatch.concatenate(batches[0].space, batches)


def candidate_front(
    problem: SearchProblem, candidates: ConfigBatch, info: Mapping[str, Any]
) -> ParetoFront:
    """The feasible, non-dominated candidates, evaluated with the problem's objectives.

    Constraints are checked first and the objectives (the accuracy oracle among them) are
    asked only about the distinct candidates that meet them, in one call each: with the
    supernet as oracle, every such candidate is one measurement. Configs with equal objective
    values keep the first; the front is sorted best first by the first objective.

    Raises:
        ValueError: a candidate uses a form the problem does not allow, or none meets the
            constraints.
    """
    unique = distinct(candidates)
    problem.layout.encode(unique)  # ValueError for a form outside the problem's
    feasible = unique.take(problem.violation(unique) <= 0.0)
    if not len(feasible):
        limits = ", ".join(f"{c.name} <= {c.limit:g}" for c in problem.constraints)
        raise InputError(f"no candidate of {info.get('strategy', 'the strategy')} meets {limits}")
    evaluation = problem.evaluate_batch(feasible)
    minimised = evaluation.minimised
    best = np.flatnonzero(non_dominated(minimised))
    _, first = np.unique(evaluation.values[best], axis=0, return_index=True)
    best = best[np.sort(first)]
    best = best[np.lexsort(minimised[best].T[::-1])]
    return ParetoFront(
        batch=feasible.take(best),
        objectives=tuple(
            FrontObjective(o.name, o.direction, o.label or o.name) for o in problem.objectives
        ),
        values=evaluation.values[best],
        evaluated=evaluation.values,
        evaluated_feasible=np.ones(len(feasible), dtype=bool),
        info={**info, "candidates": len(unique), "evaluated": len(feasible)},
    )
