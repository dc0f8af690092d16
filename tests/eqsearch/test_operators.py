"""The search operators both engines share: sampling, repair, duplicate elimination, mating."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.problem import Constraint, SearchProblem, macs_budget
from eqsearch.search import operators
from eqsearch.search.operators import (
    MAX_MATING_ROUNDS,
    BudgetRepair,
    CeilingSampling,
    DuplicateElimination,
    DuplicateFreeMating,
    first_population,
    genome_keys,
)

from .joint_fixtures import joint_problem
from .search_fixtures import problem_under_budget


def budget_problem() -> SearchProblem:
    """The joint space with the architecture's MACs <= 350k (of 122k..616k)."""
    return joint_problem([macs_budget(350_000.0)])


def test_ceiling_sampling_is_seeded_within_bounds_and_spans_cheap_and_expensive() -> None:
    problem = problem_under_budget()
    layout = problem.layout
    genomes = CeilingSampling().do(problem, 400, np.random.default_rng(0))
    again = CeilingSampling().do(problem, 400, np.random.default_rng(0))
    np.testing.assert_array_equal(genomes, again)
    assert genomes.shape == (400, layout.n_genes)
    assert (genomes >= layout.lower).all() and (genomes <= layout.upper).all()
    # the per-genome ceiling: some genomes have every bit gene at 0, others reach the top
    bits = genomes[:, : layout.n_bit_genes]
    assert (bits == 0).all(axis=1).any()
    assert (bits == layout.upper[: layout.n_bit_genes]).any(axis=0).all()


def test_ceiling_sampling_of_a_joint_space_is_canonical() -> None:
    problem = budget_problem()
    genomes = CeilingSampling().do(problem, 200, np.random.default_rng(1))
    np.testing.assert_array_equal(problem.layout.canonical(genomes), genomes)


def test_budget_repair_lowers_bits_until_the_budget_is_met() -> None:
    problem = problem_under_budget(w_bits=2.5)
    layout = problem.layout
    top = np.tile(layout.upper, (5, 1))
    repaired = BudgetRepair().do(problem, top, np.random.default_rng(2))
    assert repaired.shape == top.shape
    assert (costs.average_weight_bits(problem.space, problem.decode(repaired)) <= 2.5).all()
    assert (repaired <= top).all()
    np.testing.assert_array_equal(top, np.tile(layout.upper, (5, 1)))  # input untouched
    # the activation genes do not count for the weight budget: lowering them is never needed,
    # yet a random gene is picked per step, so only the weight genes must have moved
    n_elastic = len(layout.elastic)
    assert (repaired[:, :n_elastic] < top[:, :n_elastic]).any(axis=1).all()


def test_budget_repair_of_a_joint_space_shrinks_the_architecture_when_bits_are_not_enough() -> None:
    problem = budget_problem()
    top = np.tile(problem.layout.upper, (6, 1))
    repaired = BudgetRepair().do(problem, top, np.random.default_rng(3))
    assert (problem.violation(problem.decode(repaired)) == 0).all()
    arch = problem.layout.arch_genes
    assert (repaired[:, arch] < top[:, arch]).any(axis=1).all()
    np.testing.assert_array_equal(problem.layout.canonical(repaired), repaired)


def test_duplicate_elimination_keeps_first_new_rows_up_to_a_limit() -> None:
    genomes = np.array([[0, 1], [2, 3], [0, 1], [4, 5], [6, 7]])
    taken = set(genome_keys(genomes[3:4]))
    fresh = DuplicateElimination().do(genomes, taken)
    np.testing.assert_array_equal(fresh, [[0, 1], [2, 3], [6, 7]])
    assert taken == set(genome_keys(genomes))
    limited = DuplicateElimination().do(genomes, set(), limit=2)
    np.testing.assert_array_equal(limited, [[0, 1], [2, 3]])


class TwoGenes:
    """A two-gene layout whose canonical form is the genome itself."""

    n_genes = 2

    @staticmethod
    def canonical(genomes: np.ndarray) -> np.ndarray:
        return genomes


class ScriptedMating:
    """Hands out the rows of a script in order; records how many children each call asked."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows
        self.width = len(rows[0])
        self.asked: list[int] = []

    def __call__(self, count: int) -> np.ndarray:
        self.asked.append(count)
        given, self.rows = self.rows[:count], self.rows[count:]
        return np.asarray(given, dtype=np.int64).reshape(-1, self.width)


def test_duplicate_free_mating_mates_again_for_the_missing_children() -> None:
    mating = DuplicateFreeMating(TwoGenes(), oversample=2)  # type: ignore[arg-type]
    parents = {bytes([1, 1])}
    # round 1 asks 2 x 3: a parent, a repeat, two new; round 2 asks 2 x 1
    mate = ScriptedMating([[1, 1], [2, 2], [2, 2], [3, 3], [1, 1], [1, 1], [4, 4], [5, 5]])
    children = mating.do(mate, 3, parents)
    np.testing.assert_array_equal(children, [[2, 2], [3, 3], [4, 4]])
    assert mate.asked == [6, 2]
    assert parents == {bytes([1, 1]), bytes([2, 2]), bytes([3, 3]), bytes([4, 4])}


def test_duplicate_free_mating_gives_up_after_its_rounds() -> None:
    mating = DuplicateFreeMating(TwoGenes())  # type: ignore[arg-type]
    mate = ScriptedMating([[1, 1]] * 100)
    children = mating.do(mate, 4, {bytes([1, 1])})
    assert children.shape == (0, 2)
    assert mate.asked == [4] * MAX_MATING_ROUNDS


def test_joint_children_of_one_subnet_are_duplicates() -> None:
    problem = budget_problem()
    layout = problem.layout
    base = CeilingSampling().do(problem, 1, np.random.default_rng(5))
    depth = layout.arch_start  # stage1.depth: at its lowest, block 2 is skipped
    one, two = base.copy(), base.copy()
    one[0, depth] = two[0, depth] = 0
    block2 = layout.arch_start + 3  # stage1.block2.expand: switched off with the block
    one[0, block2], two[0, block2] = 0, 1
    assert not np.array_equal(one, two)
    mate = ScriptedMating([one[0].tolist(), two[0].tolist()] * MAX_MATING_ROUNDS)
    children = DuplicateFreeMating(layout).do(mate, 2, set())
    np.testing.assert_array_equal(children, layout.canonical(one))


def test_first_population_is_the_problems_initial_population() -> None:
    problem = problem_under_budget(w_bits=2.5)
    mine = first_population(problem, np.random.default_rng(6), 50)
    np.testing.assert_array_equal(mine, problem.initial_population(np.random.default_rng(6), 50))
    with pytest.raises(ValueError, match="the population size must be >= 1; got 0"):
        first_population(problem, np.random.default_rng(6), 0)


def test_first_population_stops_after_its_sampling_rounds(monkeypatch) -> None:
    monkeypatch.setattr(operators, "SAMPLING_ROUNDS", 3)
    never = Constraint("never", lambda batch: np.ones(len(batch)), 0.0)
    base = problem_under_budget()
    problem = SearchProblem(base.space, base.objectives, [never], base.forms)
    with pytest.raises(ValueError, match="by sampling 60 configs: none met never <= 0"):
        first_population(problem, np.random.default_rng(0), 10)
