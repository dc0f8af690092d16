"""Constraints that do not get easier as bits go down: a layer's minimum bits, an accuracy floor."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch import costs, nsga2
from eqsearch.errors import InputError
from eqsearch.pareto import hypervolume, non_dominated
from eqsearch.problem import (
    Constraint,
    SearchProblem,
    accuracy_objective,
    at_least,
    bitops_objective,
    weight_bits_budget,
)
from eqsearch.search.operators import BudgetRepair

from .search_fixtures import TENSORRT, AnalyticOracle, all_genomes, enumerable_space

ENGINES = ("pymoo", "deap")


def b1_keeps_4_bits() -> Constraint:
    """Layer b1 (index 1) keeps at least 4 weight bits: met by 4 and 8, broken by 2 and 3."""
    return at_least("b1_w_bits", lambda batch: batch.w_bits[:, 1], 4)


def formula_accuracy(batch) -> np.ndarray:  # type: ignore[no-untyped-def]
    """AnalyticOracle's accuracy written out (one form, TensorRT's channel-sym-sym)."""
    w_noise = np.array([0.0, 10.0, 6.0, 3.0, 1.5, 0.0]) * 4.0 ** (2 - batch.w_bits)
    a_noise = np.array([0.0, 8.0, 4.5, 2.5, 2.0, 0.0]) * 4.0 ** (2 - batch.a_bits)
    result: np.ndarray = 99.0 - w_noise.sum(axis=1) - a_noise.sum(axis=1)
    return result


def problem_with(*constraints: Constraint) -> SearchProblem:
    space = enumerable_space()
    return SearchProblem(
        space,
        [accuracy_objective(AnalyticOracle(space)), bitops_objective()],
        constraints,
        forms=TENSORRT,
    )


def exact_front(problem: SearchProblem) -> tuple[float, tuple[float, float]]:
    """Hypervolume and nadir of the exact front, enumerated over all 20,736 configs."""
    evaluation = problem.evaluate(all_genomes(problem))
    feasible = evaluation.feasible
    front = evaluation.values[feasible][non_dominated(evaluation.minimised[feasible])]
    nadir = (float(front[:, 0].min()), float(front[:, 1].max()))
    return hypervolume(front * [-1, 1], [-nadir[0], nadir[1]]), nadir


@pytest.mark.parametrize("engine", ENGINES)
def test_a_minimum_bits_rule_on_one_layer_is_searched_by_both_engines(engine: str) -> None:
    problem = problem_with(weight_bits_budget(3.0), b1_keeps_4_bits())
    exact, nadir = exact_front(problem)
    front = nsga2(problem, engine=engine, population=30, generations=30, seed=0)
    assert len(front) > 20
    assert (front.batch.w_bits[:, 1] >= 4).all()
    assert (costs.average_weight_bits(problem.space, front.batch) <= 3.0).all()
    assert non_dominated(front.minimised()).all()
    assert front.hypervolume(nadir) >= 0.95 * exact


@pytest.mark.parametrize("engine", ENGINES)
def test_an_accuracy_floor_is_met_by_every_config_of_both_engines(engine: str) -> None:
    space = enumerable_space()
    floor = at_least("accuracy_floor", AnalyticOracle(space).evaluate, 90.0, "accuracy")
    problem = problem_with(weight_bits_budget(3.5), floor)
    exact, nadir = exact_front(problem)
    front = nsga2(problem, engine=engine, population=30, generations=30, seed=1)
    assert len(front) > 20
    accuracy = formula_accuracy(front.batch)
    np.testing.assert_allclose(front.column("accuracy"), accuracy)
    assert (accuracy >= 90.0).all()
    assert (costs.average_weight_bits(space, front.batch) <= 3.5).all()
    assert front.hypervolume(nadir) >= 0.95 * exact


def test_the_first_population_meets_every_constraint_and_repair_only_touches_budgets() -> None:
    problem = problem_with(weight_bits_budget(3.0), b1_keeps_4_bits())
    genomes = problem.initial_population(np.random.default_rng(4), 40)
    assert len({row.tobytes() for row in genomes}) == 40
    assert (problem.violation(problem.decode(genomes)) == 0).all()
    # 8-bit weights everywhere but b1 at 2 bits: over the budget and under the floor
    over = problem.layout.encode(problem.space.batch([problem.space.uniform(8, 8, TENSORRT)]))
    over[0, 0] = 0
    repaired = BudgetRepair().do(problem, over, np.random.default_rng(0))
    batch = problem.decode(repaired)
    assert costs.average_weight_bits(problem.space, batch)[0] <= 3.0
    assert batch.w_bits[0, 1] == 2  # repair never raises bits: the floor is left to sampling
    alone = problem_with(b1_keeps_4_bits())
    assert BudgetRepair().do(alone, over, np.random.default_rng(0)) is over


@pytest.mark.parametrize("engine", ENGINES)
def test_a_problem_no_sampled_config_can_meet_is_refused_in_one_line(engine: str) -> None:
    # b1 at 4 bits and the rest at 2 average 2.07 weight bits: over the 2-bit budget
    problem = problem_with(weight_bits_budget(2.0), b1_keeps_4_bits())
    with pytest.raises(InputError) as error:
        nsga2(problem, engine=engine, population=30, generations=5, seed=0)
    assert str(error.value) == (
        "no config meeting the constraints was found by sampling 3000 configs: none met "
        "b1_w_bits <= -4 (that is, b1_w_bits >= 4)"
    )


def test_constraints_each_met_alone_but_never_together_are_refused() -> None:
    at_most_2 = Constraint("b1_low", lambda batch: batch.w_bits[:, 1], 2.0)
    at_least_8 = at_least("b1_high", lambda batch: batch.w_bits[:, 1], 8)
    problem = problem_with(at_most_2, at_least_8)
    with pytest.raises(InputError, match="each constraint was met by some, never all at once"):
        problem.initial_population(np.random.default_rng(0), 10)


def test_a_monotone_budget_below_reach_is_still_refused_before_sampling() -> None:
    problem = problem_with(b1_keeps_4_bits(), weight_bits_budget(1.5))
    with pytest.raises(InputError) as error:
        problem.initial_population(np.random.default_rng(0), 10)
    assert str(error.value) == (
        "the budget w_bits <= 1.5 cannot be met: the smallest reachable average weight bits is 2.00"
    )
    problem_with(b1_keeps_4_bits()).check_feasible()  # a floor alone is not judged up front


def test_constraint_flags_and_floors_are_validated() -> None:
    assert weight_bits_budget(3.0).monotone
    assert not b1_keeps_4_bits().monotone
    with pytest.raises(InputError, match=r"Constraint\.monotone must be True or False"):
        Constraint("x", len, 1.0, monotone="yes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="the minimum of 'x' must be a number"):
        at_least("x", len, "4")  # type: ignore[arg-type]
    floor = at_least("x", lambda batch: np.arange(len(batch)), 1)
    space = enumerable_space()
    batch = space.batch([space.uniform(8, 8)] * 3)
    np.testing.assert_array_equal(floor.values(batch), [0.0, -1.0, -2.0])
    np.testing.assert_array_equal(floor.violation(batch), [1.0, 0.0, 0.0])
