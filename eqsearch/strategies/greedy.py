"""Greedy sensitivity descent (AIMET/NNCF-style): lower the cheapest-per-saved-cost layer."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.space import ConfigBatch
from eqsearch.space.arrays import IntArray
from eqsearch.strategies.additive import (
    LayerCosts,
    constraint_costs,
    default_sweep,
    index_configs,
    sweep_costs,
)
from eqsearch.strategies.front import candidate_front, concatenate
from eqsearch.strategies.ilp import budget_levels
from eqsearch.strategies.sensitivity import Sensitivities, require_fixed_architecture

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
        raise InputError(
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
    problem: SearchProblem,
    sensitivities: Sensitivities,
    *,
    sweep: str | None = None,
    budgets: int | None = None,
) -> ConfigBatch:
    """The greedy curve of every allowed form (see :func:`greedy_path`).

    Args:
        problem: the space, allowed forms and budgets.
        sensitivities: covering the problem's forms.
        sweep: the cost the curve saves (default: the problem's cost objective's).
        budgets: None for the whole curve; else, per form, the greedy's pick at each of this
            many levels of the swept cost (spaced as the ILP's, see ``budget_levels``): the
            first config of the curve within the level and the problem's budgets, as a user
            of a greedy tool asks it for one config per budget.
    """
    space = problem.space
    require_fixed_architecture(space, "the greedy strategy")
    sensitivities.check_space(space)
    swept_name = sweep or default_sweep(problem)
    batches = []
    for form in problem.layout.forms:
        weight, activation = sensitivities.tables(form)
        swept = sweep_costs(space, form, swept_name, problem)
        w_index, a_index = greedy_path(weight, activation, swept, constraint_costs(problem, form))
        curve = index_configs(space, form, w_index, a_index)
        if budgets is not None:
            cost = swept.of(w_index, a_index)
            feasible = problem.violation(curve) <= 0.0
            picks = set()
            for level in budget_levels(swept.smallest, swept.largest, budgets):
                within = np.flatnonzero(feasible & (cost <= level * (1 + 1e-12)))
                if len(within):
                    picks.add(int(within[0]))
            curve = curve.take(np.asarray(sorted(picks), dtype=np.int64))
        batches.append(curve)
    return concatenate(batches)


def greedy_search(
    problem: SearchProblem,
    sensitivities: Sensitivities,
    *,
    sweep: str | None = None,
    budgets: int | None = None,
) -> ParetoFront:
    """The ``greedy`` strategy: the configs of :func:`greedy_configs` evaluated into a front
    (configs over a budget are dropped before evaluation)."""
    started = time.perf_counter()
    candidates = greedy_configs(problem, sensitivities, sweep=sweep, budgets=budgets)
    info = {
        "strategy": "greedy",
        "sensitivity": sensitivities.method,
        "sweep": sweep or default_sweep(problem),
        "budgets": budgets,
        "curve": len(candidates),
        "solve_seconds": time.perf_counter() - started,
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
    }
    return candidate_front(problem, candidates, info)
