"""NSGA-II on pymoo's compiled pieces, driven by a loop over whole-population arrays."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.engines.base import Archive, FloatArray, Progress, check_search, search_info
from eqsearch.pareto import ParetoFront
from eqsearch.search.operators import DuplicateFreeMating, genome_keys
from eqsearch.search.problem import SearchProblem
from eqsearch.space import IntArray

CROSSOVER_ETA = 3.0
MUTATION_ETA = 3.0
CROSSOVER_PROB_VAR = 0.5
"""pymoo's integer-genome setting: a small distribution index (3) so that rounded SBX and
polynomial-mutation children still move by whole steps; half the genes crossed."""

OVERSAMPLE = 2
"""Children mated per missing one: a third or more of the children repeat a parent once
rounded, so that mating twice as many as are missing usually takes one round (one call of
each operator)."""


def pareto_ranks(minimised: FloatArray) -> npt.NDArray[np.int64]:
    """Non-domination rank of every row (0 = first front), by pymoo's sorter (moocore in C)."""
    try:
        from moocore import pareto_rank
    except ImportError:  # pymoo < 0.6.2 sorts in its own compiled module
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        _, rank = NonDominatedSorting().do(minimised, return_rank=True)
        return np.asarray(rank, dtype=np.int64)
    return np.asarray(pareto_rank(minimised), dtype=np.int64)


def crowding_distances(minimised: FloatArray, rank: npt.NDArray[np.int64]) -> FloatArray:
    """NSGA-II crowding distance of every row within its own front, all fronts at once.

    Per objective, rows are sorted by (rank, value); each row's distance adds the normalised
    gap between its neighbours in the same front, and the ends of every front get infinity.
    """
    n, m = minimised.shape
    distance = np.zeros(n, dtype=np.float64)
    if n == 0:
        return distance
    positions = np.arange(n)
    for column in range(m):
        order = np.lexsort((minimised[:, column], rank))
        values = minimised[order, column]
        ranks = rank[order]
        starts = np.r_[True, ranks[1:] != ranks[:-1]]
        ends = np.r_[ranks[1:] != ranks[:-1], True]
        start_of = np.maximum.accumulate(np.where(starts, positions, 0))
        end_of = np.minimum.accumulate(np.where(ends, positions, n)[::-1])[::-1]
        span = values[end_of] - values[start_of]
        gap = np.r_[values[1:], 0.0] - np.r_[0.0, values[:-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            contribution = np.where(span > 0, gap / span, 0.0)
        contribution[(starts | ends) & (span > 0)] = np.inf
        contribution[starts & ends] = np.inf
        distance[order] += contribution
    return distance


def rank_population(
    minimised: FloatArray, violation: FloatArray
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Ranks and crowding under Deb's constraint handling.

    Feasible rows are ranked by non-domination; infeasible rows come after every feasible
    one, ordered by their violation.
    """
    feasible = violation <= 0.0
    rank = np.empty(len(violation), dtype=np.int64)
    crowding = np.zeros(len(violation), dtype=np.float64)
    if feasible.any():
        rank[feasible] = pareto_ranks(minimised[feasible])
        crowding[feasible] = crowding_distances(minimised[feasible], rank[feasible])
    if (~feasible).any():
        offset = int(rank[feasible].max()) + 1 if feasible.any() else 0
        order = np.argsort(np.argsort(violation[~feasible], kind="stable"), kind="stable")
        rank[~feasible] = offset + order
    return rank, crowding


def survivors(
    rank: npt.NDArray[np.int64], crowding: FloatArray, count: int
) -> npt.NDArray[np.int64]:
    """The ``count`` best rows: lower rank first, then the less crowded."""
    order = np.lexsort((-crowding, rank))
    return order[:count]


def tournament(
    rng: np.random.Generator,
    rank: npt.NDArray[np.int64],
    crowding: FloatArray,
    count: int,
) -> npt.NDArray[np.int64]:
    """``count`` binary-tournament winners: lower rank, then larger crowding, then a coin."""
    first = rng.integers(0, len(rank), count)
    second = rng.integers(0, len(rank), count)
    coin = rng.random(count) < 0.5
    first_wins = (rank[first] < rank[second]) | (
        (rank[first] == rank[second])
        & ((crowding[first] > crowding[second]) | ((crowding[first] == crowding[second]) & coin))
    )
    winners: npt.NDArray[np.int64] = np.where(first_wins, first, second)
    return winners


def make_offspring(
    rng: np.random.Generator,
    genomes: IntArray,
    rank: npt.NDArray[np.int64],
    crowding: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    count: int,
) -> IntArray:
    """``count`` children: SBX then polynomial mutation (pymoo's array operators), rounded."""
    from pymoo.operators.crossover.sbx import cross_sbx
    from pymoo.operators.mutation.pm import mut_pm

    n_matings = (count + 1) // 2
    n_genes = genomes.shape[1]
    parents = tournament(rng, rank, crowding, 2 * n_matings).reshape(2, n_matings)
    pairs = genomes[parents].astype(np.float64)
    children = cross_sbx(
        pairs,
        lower,
        upper,
        np.full((n_matings, 1), CROSSOVER_ETA),
        np.full((n_matings, 1), CROSSOVER_PROB_VAR),
        np.full((n_matings, 1), 0.5),
        random_state=rng,
    ).reshape(2 * n_matings, n_genes)[:count]
    mutated = mut_pm(
        children,
        lower,
        upper,
        np.full(count, MUTATION_ETA),
        np.full(count, 1.0 / n_genes),
        False,
        random_state=rng,
    )
    rounded: IntArray = np.clip(np.rint(mutated), lower, upper).astype(np.int64)
    return rounded


def run(
    problem: SearchProblem,
    *,
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    progress: Progress | None = None,
) -> ParetoFront:
    """NSGA-II with pymoo's operators and sorting, one oracle call per generation.

    The loop keeps the population as integer arrays: binary tournament on (rank, crowding),
    pymoo's SBX and polynomial mutation with rounding, then elitist survival of parents +
    offspring (feasible configs first, ranked by non-domination and crowding; infeasible
    ones by their violation). The first population and the duplicate-free mating are the
    shared ones of :mod:`eqsearch.search.operators`.
    """
    check_search(problem, population, generations, seed)
    rng = np.random.default_rng(seed)
    layout = problem.layout
    mating = DuplicateFreeMating(layout, oversample=OVERSAMPLE)
    lower = layout.lower.astype(np.float64)
    upper = layout.upper.astype(np.float64)
    archive = Archive()
    genomes = problem.initial_population(rng, population)
    evaluation = problem.evaluate(genomes)
    archive.add(genomes, evaluation)
    minimised, violation = evaluation.minimised, evaluation.violation
    rank, crowding = rank_population(minimised, violation)
    for generation in range(generations):
        # children that are neither a parent nor each other's duplicates
        mate = partial(make_offspring, rng, genomes, rank, crowding, lower, upper)
        children = mating.do(mate, population, set(genome_keys(genomes)))
        if len(children):
            child_evaluation = problem.evaluate(children)
            archive.add(children, child_evaluation)
            genomes = np.concatenate([genomes, children])
            minimised = np.concatenate([minimised, child_evaluation.minimised])
            violation = np.concatenate([violation, child_evaluation.violation])
            rank, crowding = rank_population(minimised, violation)
            keep = survivors(rank, crowding, population)
            genomes, minimised, violation = genomes[keep], minimised[keep], violation[keep]
            rank, crowding = rank[keep], crowding[keep]
        if progress is not None:
            progress(generation + 1, generations)
    info: dict[str, Any] = search_info(problem, "pymoo", population, generations, seed)
    return archive.front(problem, info)
