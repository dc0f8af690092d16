"""NSGA-II engines over a SearchProblem: ``nsga2(problem, engine="pymoo" | "deap")``."""

from __future__ import annotations

from eqsearch.engines import deap, pymoo
from eqsearch.engines.base import Progress, search_memory_bytes
from eqsearch.pareto import ParetoFront
from eqsearch.search.problem import SearchProblem
from eqsearch.search.solvers import get_solver, register_solver, solver_names

register_solver("pymoo", family="engine")(pymoo.run)
register_solver("deap", family="engine")(deap.run)

ENGINES = solver_names("engine")
"""The registered NSGA-II engines (solvers of the ``engine`` family)."""


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
            mutation); both take sampling, repair and duplicate elimination from
            :mod:`eqsearch.search.operators`.
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
    solver = get_solver(engine, "engine")
    return solver(
        problem, population=population, generations=generations, seed=seed, progress=progress
    )


__all__ = ["ENGINES", "nsga2", "search_memory_bytes"]
