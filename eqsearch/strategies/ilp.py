"""HAWQ-V3's integer program: the least summed sensitivity under budgets, swept over budgets."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.resources import check_memory
from eqsearch.space import ConfigBatch
from eqsearch.space.arrays import FloatArray, IntArray
from eqsearch.strategies.additive import (
    constraint_costs,
    default_sweep,
    index_configs,
    sweep_costs,
)
from eqsearch.strategies.front import candidate_front, concatenate
from eqsearch.strategies.sensitivity import Sensitivities, require_fixed_architecture

TIME_LIMIT_SECONDS = 120.0
"""Per integer program; the programs here (one binary per layer and bit pair) take
milliseconds."""


@contextmanager
def _quiet_solver() -> Iterator[None]:
    """HiGHS writes some diagnostics with C's printf whatever ``milp``'s ``disp`` says
    ("HighsMipSolverData::transformNewIntegerFeasibleSolution ..."): point the process's
    standard output at /dev/null while it solves, flushing C's buffer before it comes back."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdout() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to flush (not a POSIX platform)
        pass


class SolverError(RuntimeError):
    """The MILP solver stopped without proving a solution optimal or the program infeasible."""


def _solve(
    objective: FloatArray,
    rows: FloatArray,
    upper: FloatArray,
    n_layers: int,
    n_options: int,
) -> tuple[IntArray, float] | None:
    from scipy.optimize import Bounds, LinearConstraint, milp

    n = n_layers * n_options
    one_per_layer = np.kron(np.eye(n_layers), np.ones((1, n_options)))
    constraints = [LinearConstraint(one_per_layer, 1.0, 1.0)]
    if len(rows):
        # rows scaled to unit size, so the solver's absolute tolerances mean the same for
        # average bits (~1) and BitOPs (~1e8)
        scale = np.maximum(np.abs(rows).max(axis=1), 1e-300)
        constraints.append(
            LinearConstraint(rows / scale[:, None], -np.inf, upper / scale),
        )
    with _quiet_solver():
        result = milp(
            objective,
            constraints=constraints,
            integrality=np.ones(n),
            bounds=Bounds(0.0, 1.0),
            options={"mip_rel_gap": 0.0, "time_limit": TIME_LIMIT_SECONDS},
        )
    if result.status == 2:
        return None
    if result.status != 0 or result.x is None:
        raise SolverError(f"the MILP solver stopped: {result.message}")
    choice = np.asarray(result.x, dtype=np.float64).reshape(n_layers, n_options).argmax(axis=1)
    return choice.astype(np.int64), float(result.fun)


def min_sensitivity_choices(
    sensitivity: npt.ArrayLike,
    costs: Sequence[npt.ArrayLike] = (),
    limits: Sequence[float] = (),
    *,
    tie_cost: npt.ArrayLike | None = None,
) -> IntArray | None:
    """Per layer, the option that minimises the summed sensitivity under linear budgets.

    Solves ``min Σ_l s[l, o_l]`` subject to ``Σ_l c_k[l, o_l] <= limit_k`` for every k, one
    option per layer, as a 0/1 integer program (SciPy's ``milp``, HiGHS, no optimality gap).
    Among optimal choices, ``tie_cost`` (when given) picks one of the least summed tie cost:
    a second program minimises it with the sensitivity held at the optimum.

    Args:
        sensitivity: ``(layers, options)``.
        costs: ``(layers, options)`` tables, one per budget.
        limits: the budgets' right-hand sides.
        tie_cost: ``(layers, options)``.

    Returns:
        The chosen option index per layer, or None when no choice meets the budgets.
    """
    values = np.asarray(sensitivity, dtype=np.float64)
    if values.ndim != 2 or not values.size:
        raise InputError(f"sensitivity must be a (layers, options) array; got {values.shape}")
    n_layers, n_options = values.shape
    tables = [np.asarray(cost, dtype=np.float64) for cost in costs]
    if len(tables) != len(limits):
        raise InputError(f"got {len(tables)} cost tables but {len(limits)} limits")
    for table in tables:
        if table.shape != values.shape:
            raise InputError(f"cost tables must have shape {values.shape}; got {table.shape}")
    rows = np.stack([t.ravel() for t in tables]) if tables else np.zeros((0, values.size))
    upper = np.asarray(limits, dtype=np.float64)
    solved = _solve(values.ravel(), rows, upper, n_layers, n_options)
    if solved is None or tie_cost is None:
        return None if solved is None else solved[0]
    choice, optimum = solved
    # hold the sensitivity at its optimum (to a relative 1e-9) and take the cheapest
    slack = 1e-9 * max(1.0, float(np.abs(values).sum()))
    tie = np.asarray(tie_cost, dtype=np.float64).ravel()
    held = _solve(
        tie,
        np.vstack([rows, values.ravel()[None, :]]),
        np.append(upper, optimum + slack),
        n_layers,
        n_options,
    )
    return choice if held is None else held[0]


def budget_levels(smallest: float, largest: float, count: int) -> FloatArray:
    """``count`` budgets from ``smallest`` to ``largest``, spaced geometrically."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(f"budgets must be a positive number of budgets; got {count!r}")
    if count == 1 or largest <= smallest:
        return np.asarray([largest], dtype=np.float64)
    check_memory(3 * 8.0 * count, f"{count} budget levels")
    if smallest > 0:
        levels: FloatArray = np.geomspace(smallest, largest, count)
    else:
        levels = np.linspace(smallest, largest, count)
    levels[0], levels[-1] = smallest, largest
    return levels


def ilp_configs(
    problem: SearchProblem,
    sensitivities: Sensitivities,
    *,
    sweep: str | None = None,
    budgets: int | Sequence[float] = 20,
) -> ConfigBatch:
    """One config per allowed form and budget level: the least summed sensitivity that meets
    the problem's constraints and ``sweep <= level`` (levels where nothing fits are skipped).

    Args:
        problem: the space, allowed forms and constraints (its objectives are not used here).
        sensitivities: covering the problem's forms.
        sweep: the swept cost (``w_bits``, ``a_bits``, ``bitops``, ``size``); by default the
            one of the problem's cost objective.
        budgets: a number of levels spaced geometrically over the form's reachable range of
            the swept cost, or the levels themselves.
    """
    space = problem.space
    require_fixed_architecture(space, "the ilp strategy")
    sensitivities.check_space(space)
    swept_name = sweep or default_sweep(problem)
    n_elastic, n_a = len(space.elastic_indices), len(space.a_bits)
    w_rows: list[IntArray] = []
    a_rows: list[IntArray] = []
    forms = []
    for form in problem.layout.forms:
        weight, activation = sensitivities.tables(form)
        options = (weight[:, :, None] + activation[:, None, :]).reshape(n_elastic, -1)
        budget_tables = constraint_costs(problem, form)
        swept = sweep_costs(space, form, swept_name, problem)
        levels = (
            budget_levels(swept.smallest, swept.largest, budgets)
            if isinstance(budgets, (int, np.integer))
            else np.asarray(budgets, dtype=np.float64)
        )
        tables = [t.table.reshape(n_elastic, -1) for t in budget_tables]
        fixed = [t.limit - t.base for t in budget_tables]
        sweep_table = swept.table.reshape(n_elastic, -1)
        for level in levels:
            choice = min_sensitivity_choices(
                options,
                [*tables, sweep_table],
                [*fixed, float(level) - swept.base],
                tie_cost=sweep_table,
            )
            if choice is not None:
                w_index, a_index = np.divmod(choice, n_a)
                w_rows.append(w_index)
                a_rows.append(a_index)
                forms.append(form)
    if not w_rows:
        return space.batch([])
    batches = [
        index_configs(space, form, w[None, :], a[None, :])
        for form, w, a in zip(forms, w_rows, a_rows, strict=True)
    ]
    return concatenate(batches)


def ilp_search(
    problem: SearchProblem,
    sensitivities: Sensitivities,
    *,
    sweep: str | None = None,
    budgets: int | Sequence[float] = 20,
    progress: Callable[[int, int], None] | None = None,
) -> ParetoFront:
    """The ``ilp`` strategy: :func:`ilp_configs` evaluated into a front.

    Returns:
        The feasible, non-dominated configs among the solutions of every budget, valued by
        the problem's objectives (with the supernet as accuracy oracle: measured).
    """
    started = time.perf_counter()
    candidates = ilp_configs(problem, sensitivities, sweep=sweep, budgets=budgets)
    solve_seconds = time.perf_counter() - started
    if progress is not None:
        progress(1, 1)
    info = {
        "strategy": "ilp",
        "sensitivity": sensitivities.method,
        "sweep": sweep or default_sweep(problem),
        "budgets": budgets if isinstance(budgets, int) else [float(b) for b in budgets],
        "solve_seconds": solve_seconds,
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
    }
    return candidate_front(problem, candidates, info)
