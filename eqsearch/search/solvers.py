"""One registry of solvers: the NSGA-II engines and the strategies, each ``solver(problem)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.registry import Registry
from eqsearch.search.problem import SearchProblem

FAMILIES = ("engine", "strategy")
"""``engine``: an NSGA-II implementation (``nsga2(engine=...)``, ``eqsearch nsga --engine``);
``strategy``: what users would pick instead (``run_strategy``, ``eqsearch strategy``)."""

SolverFunction = TypeVar("SolverFunction", bound=Callable[..., ParetoFront])


@dataclass(frozen=True)
class Solver:
    """A registered solver: ``solver(problem, **settings) -> ParetoFront``.

    Every solver returns the feasible, non-dominated configs it found as a
    :class:`~eqsearch.pareto.ParetoFront`, is a function of its settings (a seeded one of its
    seed), and refuses bad settings with an :class:`~eqsearch.errors.InputError`.

    Args:
        name: the registered name.
        family: one of :data:`FAMILIES`.
        run: ``run(problem, **settings)``.
        settings: the keyword settings ``run`` takes.
        required: the settings it cannot run without.
    """

    name: str
    family: str
    run: Callable[..., ParetoFront]
    settings: tuple[str, ...]
    required: tuple[str, ...]

    def __call__(self, problem: SearchProblem, **settings: Any) -> ParetoFront:
        """Solve ``problem``; an InputError for a setting it does not take or lacks."""
        if not isinstance(problem, SearchProblem):
            raise InputError(f"a solver needs a SearchProblem; got {type(problem).__name__}")
        unknown = [key for key in settings if key not in self.settings]
        if unknown:
            takes = ", ".join(self.settings) or "no settings"
            raise InputError(
                f"the {self.name} {self.family} takes {takes}; got the setting {unknown[0]!r}"
            )
        missing = [key for key in self.required if settings.get(key) is None]
        if missing:
            raise InputError(f"the {self.name} {self.family} needs {missing[0]}")
        return self.run(problem, **settings)


SOLVERS: Registry[Solver] = Registry("solver")
"""Every solver by name. ``eqsearch.engines`` and ``eqsearch.strategies`` register theirs
when imported (``eqsearch`` imports the engines)."""


def register_solver(name: str, family: str) -> Callable[[SolverFunction], SolverFunction]:
    """A decorator registering ``run(problem, **settings) -> ParetoFront`` as a solver.

    Its keyword parameters after the problem are the settings; those without a default are
    required.
    """
    if family not in FAMILIES:
        raise InputError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")

    def decorate(run: SolverFunction) -> SolverFunction:
        parameters = list(inspect.signature(run).parameters.values())[1:]
        named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        SOLVERS.add(
            name,
            Solver(
                name,
                family,
                run,
                settings=tuple(p.name for p in named),
                required=tuple(p.name for p in named if p.default is p.empty),
            ),
        )
        return run

    return decorate


def solver_names(family: str) -> tuple[str, ...]:
    """The registered names of one family, in registration order."""
    return SOLVERS.names(lambda solver: solver.family == family)


def get_solver(name: object, family: str) -> Solver:
    """The solver ``name`` of ``family``; an InputError naming the family's solvers."""
    return SOLVERS.lookup(name, family, lambda solver: solver.family == family)
