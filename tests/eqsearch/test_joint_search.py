"""NSGA-II over a joint architecture × bits space: exact fronts, budgets, repair, files."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from eqsearch import costs, nsga2
from eqsearch.oracle import CachedOracle
from eqsearch.pareto import ParetoFront, hypervolume, non_dominated
from eqsearch.problem import (
    SearchProblem,
    accuracy_objective,
    bitops_budget,
    bitops_objective,
    macs_budget,
    make_problem,
    weight_bits_budget,
)
from eqsearch.space import JOINT_SPACE_VERSION, ElasticSpace, SubnetConfig

from .joint_fixtures import (
    TENSORRT,
    JointOracle,
    all_canonical_genomes,
    joint_problem,
    joint_space,
)

ENGINES = ("pymoo", "deap")
MACS_LIMIT = 350_000.0


def budget_problem() -> SearchProblem:
    """Accuracy vs BitOPs with the architecture's MACs <= 350k (of 122k..616k)."""
    return joint_problem([macs_budget(MACS_LIMIT)])


@pytest.fixture(scope="module")
def exact_front() -> tuple[np.ndarray, tuple[float, float], float]:
    problem = budget_problem()
    genomes = all_canonical_genomes(problem)
    assert len(genomes) == 360_000  # 400 architectures, each with its searched layers' bits
    evaluation = problem.evaluate(genomes)
    feasible = evaluation.feasible
    front = evaluation.values[feasible][non_dominated(evaluation.minimised[feasible])]
    nadir = (float(front[:, 0].min()), float(front[:, 1].max()))
    volume = hypervolume(front * [-1, 1], [-nadir[0], nadir[1]])
    return front, nadir, volume


def test_exact_joint_front_by_enumeration(exact_front) -> None:
    front, nadir, volume = exact_front
    assert len(front) == 41
    assert nadir == pytest.approx((65.8697378, 21_871_616.0))
    assert volume == pytest.approx(299_615_028.14, rel=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 1])
def test_engines_reach_99_percent_of_the_exact_hypervolume(engine, seed, exact_front) -> None:
    _, nadir, volume = exact_front
    problem = budget_problem()
    front = nsga2(problem, engine=engine, population=40, generations=60, seed=seed)
    assert front.hypervolume(nadir) >= 0.99 * volume
    space = front.space
    assert (costs.macs(space, front.batch) <= MACS_LIMIT).all()
    assert non_dominated(front.minimised()).all()
    # every config is canonical: validation passes and canonical() changes nothing
    for config in front.configs:
        assert space.canonical(config) == config
    genomes = problem.layout.encode(front.batch)
    np.testing.assert_array_equal(problem.layout.canonical(genomes), genomes)
    assert len({config for config in front.configs}) == len(front)
    np.testing.assert_allclose(front.column("accuracy"), JointOracle(space).evaluate(front.batch))


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_joint_front(engine) -> None:
    runs = [
        nsga2(budget_problem(), engine=engine, population=20, generations=15, seed=seed)
        for seed in (4, 4, 5)
    ]
    assert runs[0].configs == runs[1].configs
    np.testing.assert_array_equal(runs[0].evaluated, runs[1].evaluated)
    assert not np.array_equal(runs[0].evaluated, runs[2].evaluated)


class RecordingOracle(JointOracle):
    """Remembers the keys of every batch it scores."""

    def __init__(self, space: ElasticSpace) -> None:
        super().__init__(space)
        self.batches: list[list[bytes]] = []

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        self.batches.append(self.space.batch(configs).keys())
        return super().evaluate(configs)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_evaluation_per_subnet_per_generation_and_once_behind_a_cache(engine) -> None:
    space = joint_space()

    def search(oracle: object) -> ParetoFront:
        problem = SearchProblem(
            space,
            [accuracy_objective(oracle), bitops_objective()],  # type: ignore[arg-type]
            [macs_budget(MACS_LIMIT)],
            forms=TENSORRT,
        )
        return nsga2(problem, engine=engine, population=30, generations=20, seed=0)

    # no generation holds two genomes of one subnet (offspring are canonical, then hashed)
    plain = RecordingOracle(space)
    search(plain)
    assert len(plain.batches) == 21 + 1  # first population, 20 generations, the references
    assert all(len(set(keys)) == len(keys) for keys in plain.batches)
    # behind a cache, each distinct subnet is scored once: the archive's subnets + references
    behind = RecordingOracle(space)
    front = search(CachedOracle(behind, space))
    assert front.evaluated is not None
    assert behind.rows == len(front.evaluated) + len(front.reference)
    assert behind.rows < plain.rows


def test_initial_population_meets_a_budget_only_a_smaller_architecture_meets() -> None:
    problem = joint_problem([macs_budget(200_000)])
    population = problem.initial_population(np.random.default_rng(0), 40)
    batch = problem.decode(population)
    assert (costs.macs(problem.space, batch) <= 200_000).all()
    assert len(np.unique(population, axis=0)) == 40
    np.testing.assert_array_equal(problem.layout.canonical(population), population)
    # repair shrank architectures (the budget is below the largest's 616k MACs)
    assert (batch.active.sum(axis=1) < problem.space.n_layers).any()


def test_budgets_on_bits_bitops_and_macs_together() -> None:
    space = joint_space()
    problem = make_problem(
        space, JointOracle(space), w_bits=4.0, bitops=15e6, macs=300_000, target="tensorrt"
    )
    assert [c.name for c in problem.constraints] == ["w_bits", "bitops_budget", "macs_budget"]
    front = nsga2(problem, population=30, generations=20, seed=1)
    table = costs.cost_table(space, front.batch)
    assert (table["w_bits"] <= 4).all() and (table["bitops"] <= 15e6).all()
    assert (table["macs"] <= 300_000).all()


def test_a_budget_below_the_smallest_architecture_is_refused() -> None:
    space = joint_space()
    smallest = costs.macs(space, space.smallest())
    with pytest.raises(ValueError, match=f"smallest reachable MACs is {smallest:.2f}"):
        make_problem(space, JointOracle(space), macs=smallest - 1)
    with pytest.raises(ValueError, match="positive number of BitOPs"):
        make_problem(space, JointOracle(space), bitops=-1)


def test_pareto_json_of_a_joint_front_has_version_2_and_reads_back(tmp_path) -> None:
    problem = SearchProblem(
        budget_problem().space,
        budget_problem().objectives,
        [weight_bits_budget(6.0), bitops_budget(2e7)],
        forms=None,
        per_layer_forms=True,
    )
    front = nsga2(problem, engine="deap", population=20, generations=10, seed=0)
    path = front.to_json(tmp_path / "pareto.json")
    data = json.loads(path.read_text())
    assert data["version"] == JOINT_SPACE_VERSION
    assert "arch" in data["configs"][0]["config"] and "macs" in data["configs"][0]
    again = ParetoFront.from_json(path, front.space)
    assert again.configs == front.configs
    np.testing.assert_array_equal(again.values, front.values)
