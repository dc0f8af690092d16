"""NSGA-II engines on an enumerable space: front quality, budgets, determinism, no leaks."""

from __future__ import annotations

import sys

import deap.creator
import numpy as np
import pytest

from eqsearch import costs, nsga2
from eqsearch.engines.base import first_occurrences, genome_keys
from eqsearch.engines.pymoo import crowding_distances, rank_population
from eqsearch.pareto import hypervolume, non_dominated
from eqsearch.problem import (
    SearchProblem,
    accuracy_objective,
    activation_bits_budget,
    bitops_objective,
    weight_bits_budget,
)

from .search_fixtures import AnalyticOracle, all_genomes, enumerable_space, problem_under_budget

ENGINES = ("pymoo", "deap")
EXACT_HYPERVOLUME = 1_206_119_673.0
"""Of the exact front (78 configs) of accuracy vs BitOPs under W <= 3.5 bits, up to its nadir
(61.5 %, 46,084,096 BitOPs): enumerated over all 20,736 configs."""


@pytest.fixture(scope="module")
def exact_front() -> tuple[np.ndarray, tuple[float, float]]:
    problem = problem_under_budget()
    evaluation = problem.evaluate(all_genomes(problem))
    feasible = evaluation.values[evaluation.feasible]
    front = feasible[non_dominated(evaluation.minimised[evaluation.feasible])]
    nadir = (float(front[:, 0].min()), float(front[:, 1].max()))
    return front, nadir


def test_exact_front_of_the_enumerable_space(exact_front) -> None:
    front, nadir = exact_front
    assert len(front) == 78
    assert nadir == (61.5, 46_084_096.0)
    assert front[:, 0].max() == pytest.approx(97.493408203125)
    assert hypervolume(front * [-1, 1], [-nadir[0], nadir[1]]) == EXACT_HYPERVOLUME


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_engines_reach_95_percent_of_the_exact_hypervolume(engine, seed, exact_front) -> None:
    _, nadir = exact_front
    front = nsga2(problem_under_budget(), engine=engine, population=40, generations=50, seed=seed)
    assert front.hypervolume(nadir) >= 0.95 * EXACT_HYPERVOLUME
    # every returned config is feasible and none dominates another
    space = front.space
    assert (costs.average_weight_bits(space, front.batch) <= 3.5).all()
    assert non_dominated(front.minimised()).all()
    accuracy = AnalyticOracle(space).evaluate(front.batch)
    np.testing.assert_allclose(front.column("accuracy"), accuracy)


@pytest.mark.parametrize("engine", ENGINES)
def test_budgets_on_weights_and_activations_always_met(engine) -> None:
    space = enumerable_space()
    problem = SearchProblem(
        space,
        [accuracy_objective(AnalyticOracle(space)), bitops_objective()],
        [weight_bits_budget(2.5), activation_bits_budget(3.0)],
        forms=None,
    )
    front = nsga2(problem, engine=engine, population=30, generations=20, seed=3)
    assert len(front) > 5
    assert (costs.average_weight_bits(space, front.batch) <= 2.5).all()
    assert (costs.average_activation_bits(space, front.batch) <= 3.0).all()
    # the form is a gene: the most accurate config found uses the most accurate form
    assert str(front.configs[0].uniform_form) == "channel-sym-sym"


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_front_other_seed_other_search(engine) -> None:
    runs = [
        nsga2(problem_under_budget(), engine=engine, population=20, generations=15, seed=seed)
        for seed in (7, 7, 8)
    ]
    assert runs[0].configs == runs[1].configs
    np.testing.assert_array_equal(runs[0].values, runs[1].values)
    np.testing.assert_array_equal(runs[0].evaluated, runs[1].evaluated)
    assert not np.array_equal(runs[0].evaluated, runs[2].evaluated)


def test_engines_leave_global_random_state_alone() -> None:
    import random

    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    for engine in ENGINES:
        nsga2(problem_under_budget(), engine=engine, population=10, generations=3, seed=0)
    assert (random.random(), np.random.random()) == expected


def test_deap_creates_no_creator_classes() -> None:
    before = set(vars(deap.creator))
    for seed in range(2):
        nsga2(problem_under_budget(), engine="deap", population=10, generations=2, seed=seed)
    # a one-objective problem right after a two-objective one gets its own fitness weights
    space = enumerable_space()
    single = SearchProblem(space, [bitops_objective()], [weight_bits_budget(3.0)])
    front = nsga2(single, engine="deap", population=10, generations=5, seed=0)
    assert len(front) == 1
    assert front.column("bitops")[0] == costs.bitops(space, space.smallest())
    assert set(vars(deap.creator)) == before


def test_one_oracle_call_per_generation() -> None:
    space = enumerable_space()
    oracle = AnalyticOracle(space)
    problem = SearchProblem(space, [accuracy_objective(oracle), bitops_objective()])
    for engine in ENGINES:
        oracle.calls = 0
        nsga2(problem, engine=engine, population=16, generations=9, seed=0)
        # the first population, 9 generations, and the uniform-bit references of the plot
        assert oracle.calls == 1 + 9 + 1


def test_unknown_engine_and_bad_settings() -> None:
    problem = problem_under_budget()
    with pytest.raises(ValueError, match="engine must be one of pymoo, deap"):
        nsga2(problem, engine="optuna")
    with pytest.raises(ValueError, match="population must be an integer >= 2"):
        nsga2(problem, population=1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        nsga2(problem, seed=-1)


def test_infeasible_budget_names_the_smallest_reachable_average() -> None:
    with pytest.raises(ValueError, match=r"smallest reachable average weight bits is 2\.00"):
        nsga2(problem_under_budget(w_bits=1.5), population=10, generations=1)


def test_genome_hashing_and_first_occurrences() -> None:
    genomes = np.array([[0, 1, 2], [0, 1, 2], [2, 1, 0], [0, 1, 2], [1, 1, 1]])
    keys = genome_keys(genomes)
    assert keys[0] == keys[1] == keys[3] and len(set(keys)) == 3
    np.testing.assert_array_equal(first_occurrences(genomes), [0, 2, 4])


def test_crowding_distance_matches_pymoo_per_front() -> None:
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    rng = np.random.default_rng(0)
    points = rng.random((60, 3))
    rank, crowding = rank_population(points, np.zeros(60))
    assert rank.max() > 2
    for front in range(rank.max() + 1):
        members = np.flatnonzero(rank == front)
        if len(members) > 3:
            expected = calc_crowding_distance(points[members]) * 3
            np.testing.assert_allclose(crowding[members], expected)
    np.testing.assert_array_equal(crowding_distances(points[:1], np.zeros(1, int)), [np.inf])


def test_infeasible_rows_rank_after_feasible_ones_by_violation() -> None:
    points = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [0.5, 0.5]])
    rank, _ = rank_population(points, np.array([0.3, 0.0, 0.0, 0.1]))
    np.testing.assert_array_equal(rank, [3, 0, 1, 2])


def test_core_search_imports_no_torch() -> None:
    import subprocess

    code = (
        "import sys, eqsearch, eqsearch.engines.pymoo, eqsearch.engines.deap, eqsearch.targets;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
