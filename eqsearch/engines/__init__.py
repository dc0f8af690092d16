"""NSGA-II engines over a SearchProblem: ``nsga2(problem, engine="pymoo" | "deap")``."""

from __future__ import annotations

import importlib

from eqsearch.engines.base import Progress, check_settings
from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.resources import check_memory

ENGINES = ("pymoo", "deap")


def nsga2(
    problem: SearchProblem,
    *,
    engine: str = "pymoo",
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    progress: Progress | None = None,
) -> ParetoFront:
    """Search ``problem`` with NSGA-II and return the feasible, non-dominated configs.

    Args:
        problem: objectives, constraints and the genome (see :class:`SearchProblem`).
        engine: ``"pymoo"`` (pymoo's compiled sorting and array operators in a vectorised
            loop) or ``"deap"`` (DEAP's ``selNSGA2`` with uniform crossover and integer
            mutation).
        population: individuals per generation; the first population is sampled to meet
            every constraint.
        generations: generations after the first population (each evaluates ``population``
            new configs in one call per objective).
        seed: the whole search is a function of it: the same seed gives the same front.
        progress: called after every generation with (done, total).

    Returns:
        The front of every feasible, non-dominated config the search evaluated, best first
        by the first objective.

    Raises:
        ValueError: an unknown engine, bad settings, or constraints no config can meet.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    check_settings(population, generations, seed)
    check_memory(
        search_memory_bytes(problem, population, generations),
        f"a search of population {population} over {generations} generations",
    )
    module = importlib.import_module(f"eqsearch.engines.{engine}")
    front: ParetoFront = module.run(
        problem, population=population, generations=generations, seed=seed, progress=progress
    )
    return front


def search_memory_bytes(problem: SearchProblem, population: int, generations: int) -> float:
    """A generous estimate of a search's peak memory in bytes.

    The archive keeps every evaluated genome (one byte a gene) with its objective values and
    violation, and building the front copies it a few times; each generation decodes twice
    the population into per-layer arrays and the oracle's features.
    """
    genes = problem.layout.n_genes
    layers = problem.space.n_layers
    archive = float(population) * (generations + 1) * (genes + 8 * (len(problem.objectives) + 1))
    per_config = 8 * genes + 3 * 8 * layers + 128 * layers
    return 3 * archive + 2 * float(population) * per_config


__all__ = ["ENGINES", "nsga2", "search_memory_bytes"]
