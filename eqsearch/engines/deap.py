"""NSGA-II in DEAP: NSGA-II survival, uniform crossover, integer mutation, explicit RNG."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from eqsearch.engines.base import Archive, Progress, check_search, search_info
from eqsearch.pareto import ParetoFront
from eqsearch.search.operators import DuplicateFreeMating, genome_keys
from eqsearch.search.problem import SearchProblem
from eqsearch.space import IntArray

if TYPE_CHECKING:  # DEAP is imported by the functions that run it
    from deap import base

CROSSOVER_PROB = 0.9
"""Probability that a pair of parents is crossed (genes swapped with probability 1/2 each)."""


class _Individual(list[int]):
    """A genome with its DEAP fitness (minimised objectives), constraint violation and hash key."""

    __slots__ = ("fitness", "key", "violation")

    def __init__(self, genes: Sequence[int], fitness: base.Fitness, key: bytes = b"") -> None:
        super().__init__(genes)
        self.fitness = fitness
        self.violation = 0.0
        self.key = key


def _fitness_class(n_objectives: int) -> type[base.Fitness]:
    """A Fitness subclass local to one run (``deap.creator`` would register it globally)."""
    from deap import base

    weights = (-1.0,) * n_objectives  # the problem hands over minimised values
    return type("SearchFitness", (base.Fitness,), {"weights": weights})


def pareto_fronts(individuals: list[_Individual], count: int) -> list[list[_Individual]]:
    """The fronts DEAP's ``sortLogNondominated(individuals, count)`` returns, in its order,
    with the ranks computed by moocore's compiled sort.

    DEAP's logarithmic sort is pure Python and dominates the run time from three objectives
    on. Its output order is simple to restate: distinct fitnesses sorted lexicographically
    (best first), each front listing the individuals of its fitnesses in that order (equal
    fitnesses in population order); fronts are kept until they hold ``count`` individuals.
    """
    from moocore import pareto_rank

    if count == 0 or not individuals:
        return []
    groups: dict[tuple[float, ...], list[_Individual]] = {}
    for individual in individuals:
        groups.setdefault(individual.fitness.wvalues, []).append(individual)
    fitnesses = sorted(groups, reverse=True)
    # wvalues are maximised; moocore minimises
    ranks = pareto_rank(-np.asarray(fitnesses, dtype=np.float64)).tolist()
    fronts: list[list[_Individual]] = [[] for _ in range(max(ranks) + 1)]
    for fitness, rank in zip(fitnesses, ranks, strict=True):
        fronts[rank].extend(groups[fitness])
    kept = 0
    for index, front in enumerate(fronts):
        kept += len(front)
        if kept >= count:
            return fronts[: index + 1]
    return fronts


def nsga2_select(individuals: list[_Individual], count: int) -> list[_Individual]:
    """DEAP's ``selNSGA2(individuals, count, nd="log")`` on :func:`pareto_fronts`: whole
    fronts, then the least crowded of the last one (DEAP's crowding distance)."""
    from deap import tools
    from deap.tools.emo import assignCrowdingDist

    if len(individuals[0].fitness.weights) < 2:
        # DEAP's logarithmic sort needs two objectives or more
        chosen: list[_Individual] = tools.selNSGA2(individuals, count, nd="standard")
        return chosen
    fronts = pareto_fronts(individuals, count)
    for front in fronts:
        assignCrowdingDist(front)
    chosen = list(itertools.chain.from_iterable(fronts[:-1]))
    missing = count - len(chosen)
    if missing > 0:
        last = sorted(fronts[-1], key=lambda ind: ind.fitness.crowding_dist, reverse=True)
        chosen.extend(last[:missing])
    return chosen


def select(individuals: list[_Individual], count: int) -> list[_Individual]:
    """NSGA-II survival with Deb's constraint handling.

    Feasible individuals go through NSGA-II selection (:func:`nsga2_select`, which also sets
    each one's crowding distance); when fewer than ``count`` are feasible, the least-violating
    others fill up.
    """
    feasible = [ind for ind in individuals if ind.violation <= 0.0]
    if len(feasible) >= count:
        return nsga2_select(feasible, count)
    chosen = nsga2_select(feasible, len(feasible)) if feasible else []
    others = sorted(
        (ind for ind in individuals if ind.violation > 0.0), key=lambda ind: ind.violation
    )
    for ind in others:
        ind.fitness.crowding_dist = 0.0
    return chosen + others[: count - len(chosen)]


def _tournament(rng: random.Random, population: Sequence[_Individual]) -> _Individual:
    """Binary tournament: less violation, then Pareto dominance, then crowding, then a coin."""
    first = population[rng.randrange(len(population))]
    second = population[rng.randrange(len(population))]
    if first.violation != second.violation:
        return first if first.violation < second.violation else second
    if first.fitness.dominates(second.fitness):
        return first
    if second.fitness.dominates(first.fitness):
        return second
    first_crowding = first.fitness.crowding_dist
    second_crowding = second.fitness.crowding_dist
    if first_crowding != second_crowding:
        return first if first_crowding > second_crowding else second
    return first if rng.random() < 0.5 else second


def _vary(
    rng: random.Random,
    population: Sequence[_Individual],
    count: int,
    lower: Sequence[int],
    upper: Sequence[int],
) -> list[list[int]]:
    """``count`` children: uniform crossover of tournament winners, then integer mutation
    (each gene redrawn uniformly within its bounds with probability 1/genes)."""
    n_genes = len(lower)
    mutation_prob = 1.0 / n_genes
    draw, randint, getrandbits = rng.random, rng.randint, rng.getrandbits
    genes = range(n_genes)
    children: list[list[int]] = []
    while len(children) < count:
        one = list(_tournament(rng, population))
        two = list(_tournament(rng, population))
        if draw() < CROSSOVER_PROB:
            # bit g of the draw swaps gene g (read from the binary digits, lowest first)
            digits = format(getrandbits(n_genes), "b")[::-1]
            for gene, digit in enumerate(digits):
                if digit == "1":
                    one[gene], two[gene] = two[gene], one[gene]
        for child in (one, two):
            # one uniform draw per gene, in gene order, as in DEAP's mutUniformInt
            for gene in genes:
                if draw() < mutation_prob:
                    child[gene] = randint(lower[gene], upper[gene])
        children.extend((one, two))
    return children[:count]


def _offspring(
    rng: random.Random,
    population: Sequence[_Individual],
    count: int,
    lower: Sequence[int],
    upper: Sequence[int],
    mating: DuplicateFreeMating,
) -> IntArray:
    """Children that are neither a parent nor each other's duplicates (the shared
    duplicate-free mating over :func:`_vary`; children of one subnet count as duplicates)."""

    def mate(wanted: int) -> IntArray:
        return np.asarray(_vary(rng, population, wanted, lower, upper), dtype=np.int64)

    return mating.do(mate, count, {individual.key for individual in population})


def run(
    problem: SearchProblem,
    *,
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    progress: Progress | None = None,
) -> ParetoFront:
    """NSGA-II with DEAP: ``selNSGA2`` survival (ranks by moocore), tournaments
    on dominance and crowding, uniform crossover and uniform integer mutation; the first
    population and the duplicate-free mating are the shared ones of
    :mod:`eqsearch.search.operators`.

    Every random draw comes from one ``random.Random(seed)``; the Fitness class is created per
    run, so nothing is registered in ``deap.creator``. Each generation's offspring are
    evaluated in one call.
    """
    check_search(problem, population, generations, seed)
    rng = random.Random(seed)
    mating = DuplicateFreeMating(problem.layout)
    fitness_class = _fitness_class(len(problem.objectives))
    lower = problem.layout.lower.tolist()
    upper = problem.layout.upper.tolist()
    archive = Archive()

    def evaluated(genomes: IntArray) -> list[_Individual]:
        evaluation = problem.evaluate(genomes)
        archive.add(genomes, evaluation)
        individuals = []
        for genes, values, violation, key in zip(
            genomes.tolist(),
            evaluation.minimised.tolist(),
            evaluation.violation.tolist(),
            genome_keys(genomes),
            strict=True,
        ):
            individual = _Individual(genes, fitness_class(values), key)
            individual.violation = violation
            individuals.append(individual)
        return individuals

    first = problem.initial_population(np.random.default_rng(rng.getrandbits(64)), population)
    current = select(evaluated(first), population)
    for generation in range(generations):
        children = _offspring(rng, current, population, lower, upper, mating)
        if len(children):
            current = select(current + evaluated(children), population)
        if progress is not None:
            progress(generation + 1, generations)
    info: dict[str, Any] = search_info(problem, "deap", population, generations, seed)
    return archive.front(problem, info)
