"""The registry helper and the contract of each registry: solvers, objectives, budgets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import eqsearch.engines
import eqsearch.strategies
from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront, non_dominated
from eqsearch.problem import (
    BUDGETS,
    OBJECTIVES,
    Budget,
    Constraint,
    Objective,
    Sources,
    make_problem,
)
from eqsearch.registry import Registry
from eqsearch.search.solvers import SOLVERS, get_solver, register_solver, solver_names
from eqsearch.strategies import Sensitivities

from .latency_fixtures import latency_table
from .search_fixtures import TENSORRT, AnalyticOracle, enumerable_space, problem_under_budget

QUICK: dict[str, Any] = {
    "population": 12,
    "generations": 4,
    "seed": 0,
    "count": 20,
    "budgets": 4,
    "sweep": "bitops",
    "progress": None,
}
"""A small, valid value of every setting a registered solver takes (``sensitivities`` are
made per test)."""

BAD: dict[str, Any] = {
    "population": 1,
    "generations": -1,
    "seed": -1,
    "count": 0,
    "budgets": 0,
    "sweep": "latency",
    "sensitivities": None,
}
"""A value each setting refuses (``progress`` takes any callable or None)."""


def sensitivities() -> Sensitivities:
    space = enumerable_space()
    rng = np.random.default_rng(0)
    weight = rng.uniform(0.0, 3.0, (1, 4, len(space.w_bits)))
    activation = rng.uniform(0.0, 2.0, (1, 4, len(space.a_bits)))
    return Sensitivities.from_arrays(space, weight, activation, forms=(TENSORRT,))


def settings_of(name: str) -> dict[str, Any]:
    solver = SOLVERS[name]
    values = {**QUICK, "sensitivities": sensitivities()}
    return {key: values[key] for key in solver.settings}


def test_the_registry_holds_both_families_in_order() -> None:
    assert eqsearch.engines.ENGINES == solver_names("engine") == ("pymoo", "deap")
    assert solver_names("strategy") == eqsearch.strategies.STRATEGIES
    assert solver_names("strategy") == ("ilp", "greedy", "uniform", "random")
    assert eqsearch.strategies.NEEDS_SENSITIVITIES == ("ilp", "greedy")
    assert set(SOLVERS) == {"pymoo", "deap", "ilp", "greedy", "uniform", "random"}
    assert SOLVERS["deap"].settings == ("population", "generations", "seed", "progress")
    assert SOLVERS["ilp"].required == ("sensitivities",)
    with pytest.raises(InputError, match="engine must be one of pymoo, deap; got 'ilp'"):
        get_solver("ilp", "engine")


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_returns_a_feasible_front_deterministically(name: str) -> None:
    solver = SOLVERS[name]
    assert set(solver.settings) <= set(QUICK) | {"sensitivities"}, "a new setting: add it here"
    problem = problem_under_budget(w_bits=3.0)
    front = solver(problem, **settings_of(name))
    assert isinstance(front, ParetoFront)
    assert len(front) > 0
    assert (problem.violation(front.batch) == 0).all()
    assert non_dominated(front.minimised()).all()
    np.testing.assert_array_equal(
        front.values, problem.evaluate_batch(front.batch).values
    )  # the values are the problem's own
    again = solver(problem, **settings_of(name))
    assert again.configs == front.configs
    np.testing.assert_array_equal(again.values, front.values)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_refuses_bad_settings(name: str) -> None:
    solver = SOLVERS[name]
    problem = problem_under_budget(w_bits=3.0)
    good = settings_of(name)
    with pytest.raises(InputError, match=f"the {name} {solver.family} takes .*'colour'"):
        solver(problem, **good, colour="blue")
    with pytest.raises(InputError, match="a solver needs a SearchProblem; got str"):
        solver("problem", **good)  # type: ignore[arg-type]
    for key in solver.settings:
        if key in BAD:
            with pytest.raises(InputError):
                solver(problem, **{**good, key: BAD[key]})
    for key in solver.required:
        without = {k: v for k, v in good.items() if k != key}
        with pytest.raises(InputError, match=f"the {name} {solver.family} needs {key}"):
            solver(problem, **without)


def test_register_solver_reads_the_settings_from_the_signature() -> None:
    def local(problem: Any, needed: int, *, seed: int = 0) -> ParetoFront:
        raise AssertionError("not called")

    try:
        assert register_solver("local-test", family="strategy")(local) is local
        solver = SOLVERS["local-test"]
        assert (solver.settings, solver.required) == (("needed", "seed"), ("needed",))
        assert "local-test" in solver_names("strategy")
        with pytest.raises(ValueError, match="the solver 'local-test' is already registered"):
            register_solver("local-test", family="strategy")(local)
    finally:
        SOLVERS._items.pop("local-test", None)
    with pytest.raises(ValueError, match="family must be one of engine, strategy"):
        register_solver("x", family="optimiser")


def test_registry_helper() -> None:
    colours: Registry[int] = Registry("colour")
    colours.add("red", 1)

    @colours.register("green")
    def green() -> int:  # a decorated item is registered and returned unchanged
        return 2

    assert colours.lookup("red") == 1
    assert colours.lookup("green") is green
    assert list(colours) == ["red", "green"] and len(colours) == 2 and "red" in colours
    assert colours.names(lambda item: item == 1) == ("red",)
    with pytest.raises(InputError, match="colour must be one of red, green; got 'blue'"):
        colours.lookup("blue")
    with pytest.raises(InputError, match="paint must be one of red; got 'green'"):
        colours.lookup("green", "paint", where=lambda item: item == 1)
    with pytest.raises(ValueError, match="the colour 'red' is already registered"):
        colours.add("red", 3)
    with pytest.raises(ValueError, match="a colour needs a non-empty name"):
        colours.add("", 3)
    assert repr(colours) == "Registry('colour': red, green)"


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_registered_objective_builds_one_finite_value_per_config(name: str) -> None:
    space = enumerable_space()
    table = latency_table(space)
    objective = OBJECTIVES[name](Sources(space, AnalyticOracle(space), table))
    assert objective.direction in ("min", "max")
    batch = space.sample(0, 7)
    values = objective.values(batch)
    assert values.shape == (7,) and np.isfinite(values).all()
    problem = make_problem(space, AnalyticOracle(space), objectives=(name,), latency=table)
    assert problem.objective_names == (objective.name,)


@pytest.mark.parametrize("name", list(BUDGETS))
def test_every_registered_budget_is_a_constraint_the_lowest_subnets_meet(name: str) -> None:
    space = enumerable_space()
    table = latency_table(space)
    budget = BUDGETS[name]
    top, lowest = space.batch([space.uniform(8, 8)]), space.batch([space.uniform(2, 2)])
    probe = budget.build(1.0, Sources(space, latency=table))
    limit = float(probe.values(lowest)[0])
    constraint = budget.build(limit, Sources(space, latency=table))
    assert constraint.monotone is (name in MONOTONE_BUDGETS)
    if constraint.monotone:
        assert constraint.values(top)[0] >= limit
    problem = make_problem(space, AnalyticOracle(space), latency=table, **{name: limit})
    assert [c.name for c in problem.constraints] == [constraint.name]
    with pytest.raises(InputError, match=f"{name} must be a positive number of {budget.unit}"):
        make_problem(space, AnalyticOracle(space), latency=table, **{name: -1.0})


MONOTONE_BUDGETS = ("w_bits", "a_bits", "bitops", "size_bytes", "macs")
"""Budgets that never rise as bits go down; a runtime's latency may (int4 slower than int8)."""


def test_make_problem_refuses_an_unknown_budget_and_takes_a_registered_one() -> None:
    space = enumerable_space()
    with pytest.raises(InputError, match="budgets must be among w_bits, a_bits, bitops"):
        make_problem(space, AnalyticOracle(space), w_bit=3.0)
    BUDGETS.add("b4_bits", Budget("bits", lambda limit, sources: b4_bits(limit)))
    OBJECTIVES.add("b4", lambda sources: Objective("b4", lambda batch: batch.w_bits[:, 4]))
    try:
        problem = make_problem(space, None, objectives=("b4",), b4_bits=4.0)
        assert problem.objective_names == ("b4",)
        assert [c.name for c in problem.constraints] == ["b4_bits"]
    finally:
        BUDGETS._items.pop("b4_bits")
        OBJECTIVES._items.pop("b4")


def b4_bits(limit: float) -> Constraint:
    return Constraint("b4_bits", lambda batch: batch.w_bits[:, 4], limit, monotone=True)
