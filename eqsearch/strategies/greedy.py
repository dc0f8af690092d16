"""Greedy sensitivity descent (AIMET/NNCF-style): lower the cheapest-per-saved-cost layer."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.space import ConfigBatch
from eqsearch.strategies.additive import (
    LayerCosts,
    constraint_costs,
    default_sweep,
    index_configs,
    sweep_costs,
)
from eqsearch.strategies.front import candidate_front, concatenate
from eqsearch.strategies.sensitivity import Sensitivities, require_fixed_architecture

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SAVING_TOLERANCE = 1e-12
"""A step must save more than this (in units of the costs' spans) to be taken."""


def greedy_path(
    weight: npt.ArrayLike,
    activation: npt.ArrayLike,
    sweep: LayerCosts,
    budgets: Sequence[LayerCosts] = (),
) -> tuple[IntArray, IntArray]:
    """The whole greedy curve from the highest bits down.

    Each step lowers one elastic layer's weight or activation bits by one width: the step with
    the least sensitivity increase per saved cost, where the saved cost is the swept cost's
    saving plus, while a budget is exceeded, that budget's saving (each divided by its span,
    so that the units compare). Ties go to the larger saving, then weights before activations,
    then the earlier layer. The curve ends where no step saves anything.

    Args:
        weight: ``(layers, n_w_bits)`` sensitivities, bits ascending.
        activation: ``(layers, n_a_bits)``.
        sweep: the swept cost's table.
        budgets: the budgets' tables (with their limits).

    Returns:
        ``(w_index, a_index)``, each ``(steps + 1, layers)``: bit indices of every config on
        the curve, the highest-bit config first.
    """
    w_table = np.asarray(weight, dtype=np.float64)
    a_table = np.asarray(activation, dtype=np.float64)
    n_layers, n_w = w_table.shape
    n_a = a_table.shape[1]
    if sweep.table.shape != (n_layers, n_w, n_a):
        raise ValueError(
            f"the cost table has shape {sweep.table.shape}; the sensitivities need "
            f"{(n_layers, n_w, n_a)}"
        )
    w = np.full(n_layers, n_w - 1, dtype=np.int64)
    a = np.full(n_layers, n_a - 1, dtype=np.int64)
    layers = np.arange(n_layers)
    w_path, a_path = [w.copy()], [a.copy()]
    while True:
        # candidate steps: rows 0..L-1 lower weights, rows L..2L-1 lower activations
        new_w = np.concatenate([np.maximum(w - 1, 0), w])
        new_a = np.concatenate([a, np.maximum(a - 1, 0)])
        movable = np.concatenate([w > 0, a > 0])
        old_w, old_a = np.tile(w, 2), np.tile(a, 2)
        rows = np.tile(layers, 2)
        increase = np.concatenate(
            [
                w_table[layers, new_w[:n_layers]] - w_table[layers, w],
                a_table[layers, new_a[n_layers:]] - a_table[layers, a],
            ]
        )
        saving = (sweep.table[rows, old_w, old_a] - sweep.table[rows, new_w, new_a]) / sweep.span
        for budget in budgets:
            if budget.of(w[None, :], a[None, :])[0] > budget.limit:
                saving += (
                    budget.table[rows, old_w, old_a] - budget.table[rows, new_w, new_a]
                ) / budget.span
        valid = movable & (saving > SAVING_TOLERANCE)
        if not valid.any():
            break
        candidates = np.flatnonzero(valid)
        ratio = increase[candidates] / saving[candidates]
        order = np.lexsort((candidates, -saving[candidates], ratio))
        step = int(candidates[order[0]])
        layer = step % n_layers
        if step < n_layers:
            w[layer] -= 1
        else:
            a[layer] -= 1
        w_path.append(w.copy())
        a_path.append(a.copy())
    return np.stack(w_path), np.stack(a_path)


def greedy_configs(
    problem: SearchProblem, sensitivities: Sensitivities, *, sweep: str | None = None
) -> ConfigBatch:
    """Every config on the greedy curve of every allowed form (see :func:`greedy_path`)."""
    space = problem.space
    require_fixed_architecture(space, "the greedy strategy")
    sensitivities.check_space(space)
    swept_name = sweep or default_sweep(problem)
    batches = []
    for form in problem.layout.forms:
        weight, activation = sensitivities.tables(form)
        w_index, a_index = greedy_path(
            weight,
            activation,
            sweep_costs(space, form, swept_name),
            constraint_costs(problem, form),
        )
        batches.append(index_configs(space, form, w_index, a_index))
    return concatenate(batches)


def greedy_search(
    problem: SearchProblem, sensitivities: Sensitivities, *, sweep: str | None = None
) -> ParetoFront:
    """The ``greedy`` strategy: the curves of :func:`greedy_configs` evaluated into a front
    (configs over a budget are dropped before evaluation)."""
    started = time.perf_counter()
    candidates = greedy_configs(problem, sensitivities, sweep=sweep)
    info = {
        "strategy": "greedy",
        "sensitivity": sensitivities.method,
        "sweep": sweep or default_sweep(problem),
        "curve": len(candidates),
        "solve_seconds": time.perf_counter() - started,
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
    }
    return candidate_front(problem, candidates, info)
