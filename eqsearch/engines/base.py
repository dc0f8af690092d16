"""What both NSGA-II engines share: checked settings, the archive of evaluations, the front."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.pareto import FrontObjective, ParetoFront, non_dominated
from eqsearch.resources import check_memory
from eqsearch.search.operators import genome_keys
from eqsearch.search.problem import Evaluation, SearchProblem
from eqsearch.space import IntArray

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]
"""Called after each generation with (generations done, generations in all)."""


def first_occurrences(genomes: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    """Sorted row indices of the first occurrence of every distinct genome."""
    packed = np.ascontiguousarray(genomes, dtype=np.int8)
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first = np.unique(rows, return_index=True)
    result: npt.NDArray[np.int64] = np.sort(first).astype(np.int64)
    return result


def check_settings(population: int, generations: int, seed: int) -> None:
    """ValueError naming a bad population size, generation count or seed."""
    for name, value, smallest in (("population", population, 2), ("generations", generations, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
            raise InputError(f"{name} must be an integer >= {smallest}; got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")


def check_search(problem: SearchProblem, population: int, generations: int, seed: int) -> None:
    """InputError for bad settings, or for a search that would not fit in memory."""
    check_settings(population, generations, seed)
    check_memory(
        search_memory_bytes(problem, population, generations),
        f"a search of population {population} over {generations} generations",
    )


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


class Archive:
    """Every evaluated genome with its objective values and violation (for the final front)."""

    def __init__(self) -> None:
        self._genomes: list[npt.NDArray[np.int8]] = []
        self._values: list[FloatArray] = []
        self._violation: list[FloatArray] = []

    def add(self, genomes: IntArray, evaluation: Evaluation) -> None:
        """Record a population and its evaluation."""
        self._genomes.append(np.asarray(genomes, dtype=np.int8))
        self._values.append(evaluation.values)
        self._violation.append(evaluation.violation)

    def arrays(self) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray]:
        """Genomes (as stored: one byte per gene), objective values and violations of every
        evaluation, in order."""
        genomes = np.concatenate(self._genomes)
        return genomes, np.concatenate(self._values), np.concatenate(self._violation)

    def front(self, problem: SearchProblem, info: dict[str, Any]) -> ParetoFront:
        """The feasible, non-dominated configs among everything evaluated.

        A config evaluated twice counts once; configs with equal objective values keep the
        first one found.
        """
        genomes, values, violation = self.arrays()
        first = first_occurrences(genomes)
        feasible = first[violation[first] <= 0.0]
        minimised = values[feasible] * problem.signs
        best = feasible[non_dominated(minimised)]
        _, distinct = np.unique(values[best], axis=0, return_index=True)
        best = best[np.sort(distinct)]
        # best first by the first objective, ties broken by the next ones
        minimised_best = values[best] * problem.signs
        order = np.lexsort(minimised_best.T[::-1])
        best = best[order]
        return ParetoFront(
            batch=problem.decode(genomes[best].astype(np.int64)),
            objectives=tuple(
                FrontObjective(o.name, o.direction, o.label or o.name) for o in problem.objectives
            ),
            values=values[best],
            evaluated=values[first],
            evaluated_feasible=violation[first] <= 0.0,
            reference=_reference(problem),
            info=info,
        )


def _reference(problem: SearchProblem) -> dict[str, FloatArray]:
    genomes = problem.reference_genomes()
    if not len(genomes):
        return {}
    evaluation = problem.evaluate(genomes)
    labels: Iterable[str] = (
        f"W{w}A{w}" for w in sorted(set(problem.space.w_bits) & set(problem.space.a_bits))
    )
    return {label: row for label, row in zip(labels, evaluation.values, strict=True)}


def search_info(
    problem: SearchProblem, engine: str, population: int, generations: int, seed: int
) -> dict[str, Any]:
    """JSON-able facts about a search, stored with its front."""
    return {
        "engine": engine,
        "population": population,
        "generations": generations,
        "seed": seed,
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
        "per_layer_forms": problem.layout.per_layer,
    }


__all__ = [
    "Archive",
    "FloatArray",
    "Progress",
    "check_search",
    "check_settings",
    "first_occurrences",
    "genome_keys",
    "search_info",
    "search_memory_bytes",
]
