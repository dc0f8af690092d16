"""NSGA-II engines over a SearchProblem: ``nsga2(problem, engine="pymoo" | "deap")``."""

from __future__ import annotations

import importlib

from eqsearch.engines.base import Progress
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem

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
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    module = importlib.import_module(f"eqsearch.engines.{engine}")
    front: ParetoFront = module.run(
        problem, population=population, generations=generations, seed=seed, progress=progress
    )
    return front


__all__ = ["ENGINES", "nsga2"]
