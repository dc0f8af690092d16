"""Search operators both NSGA-II engines share: sampling, repair, duplicate elimination, mating.

They are shaped like pymoo's ``Sampling``, ``Repair`` and ``DuplicateElimination``: objects
with a ``do`` method over a problem and a population of integer genomes. Each engine keeps
its own selection, crossover and mutation and takes the rest from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.search.objectives import Constraint, FloatArray, total_violation
from eqsearch.space import ConfigBatch, GenomeLayout, IntArray

REPAIR_FRACTION = 32
"""A joint genome's repair lowers one in this many of its lowerable genes per step."""

SAMPLING_ROUNDS = 50
"""Rounds of sampling (each draws twice the configs still missing) before a first population
with no config meeting every constraint is refused."""

MAX_MATING_ROUNDS = 20
"""Rounds of mating to replace offspring that duplicate a parent or each other."""


class GenomeProblem(Protocol):
    """What the operators need of a problem (``SearchProblem`` has it)."""

    @property
    def layout(self) -> GenomeLayout: ...

    @property
    def constraints(self) -> Sequence[Constraint]: ...

    def decode(self, genomes: npt.ArrayLike) -> ConfigBatch: ...


def genome_keys(genomes: IntArray) -> list[bytes]:
    """One hashable key per genome (genes are small indices: one byte each)."""
    packed = np.ascontiguousarray(genomes, dtype=np.int8)
    return [row.tobytes() for row in packed]


class Sampling:
    """Draws genomes of a problem (pymoo's ``Sampling``)."""

    def do(self, problem: GenomeProblem, count: int, rng: np.random.Generator) -> IntArray:
        """``count`` canonical genomes."""
        raise NotImplementedError


class CeilingSampling(Sampling):
    """Genes drawn uniformly below a per-genome random ceiling.

    Every genome draws a ceiling in [0, 1); its bit genes (and architecture genes) are drawn
    uniformly over that fraction of their range, form genes over their whole range, so that a
    population spans cheap and expensive configs alike.
    """

    def do(self, problem: GenomeProblem, count: int, rng: np.random.Generator) -> IntArray:
        """``count`` canonical genomes (one per subnet)."""
        layout = problem.layout
        ceiling = rng.random((count, 1))
        span = (layout.upper - layout.lower + 1).astype(np.float64)
        genes = layout.lower + np.floor(rng.random((count, layout.n_genes)) * span).astype(np.int64)
        bits = slice(0, layout.n_bit_genes)
        scaled = np.floor(rng.random((count, layout.n_bit_genes)) * span[bits] * ceiling)
        genes[:, bits] = layout.lower[bits] + scaled.astype(np.int64)
        if layout.n_arch_genes:
            arch = layout.arch_genes
            drawn = rng.random((count, layout.n_arch_genes)) * span[arch] * ceiling
            genes[:, arch] = layout.lower[arch] + np.floor(drawn).astype(np.int64)
        return layout.canonical(genes)


class Repair:
    """Moves genomes towards feasibility (pymoo's ``Repair``): same rows in, same rows out."""

    def do(self, problem: GenomeProblem, genomes: IntArray, rng: np.random.Generator) -> IntArray:
        """The repaired genomes, one per input row."""
        raise NotImplementedError


class BudgetRepair(Repair):
    """Lowers random genes of genomes over a monotone budget until they meet every one.

    Only constraints marked ``monotone`` (the cost budgets) are repaired: lowering a gene
    never takes a config further from them. A genome that meets them, or can be lowered no
    further, is left as it is; the other constraints are left to sampling and to
    constraint-domination. Without architecture genes one random bit gene is lowered per
    step; in a joint space, a random ``1/REPAIR_FRACTION`` of the genes that matter (bits of
    running layers, active architecture genes), so that a 200-gene genome takes a few steps.
    """

    def do(self, problem: GenomeProblem, genomes: IntArray, rng: np.random.Generator) -> IntArray:
        """The genomes, lowered until they meet the monotone budgets (or reach the bottom)."""
        budgets = [constraint for constraint in problem.constraints if constraint.monotone]
        if not budgets:
            return genomes
        if problem.layout.n_arch_genes:
            return _lower_joint(problem, budgets, genomes, rng)
        return _lower_bits(problem, budgets, genomes, rng)


def _lower_bits(
    problem: GenomeProblem,
    budgets: Sequence[Constraint],
    genomes: IntArray,
    rng: np.random.Generator,
) -> IntArray:
    layout = problem.layout
    genomes = genomes.copy()
    active = np.arange(len(genomes))
    while len(active):
        ok = total_violation(budgets, problem.decode(genomes[active])) <= 0.0
        active = active[~ok]
        if not len(active):
            break
        bits = genomes[active, : layout.n_bit_genes]
        lowerable = bits > layout.lower[: layout.n_bit_genes]
        stuck = ~lowerable.any(axis=1)
        active, bits, lowerable = active[~stuck], bits[~stuck], lowerable[~stuck]
        if not len(active):
            break
        pick = np.argmax(rng.random(bits.shape) * lowerable, axis=1)
        genomes[active, pick] -= 1
    return genomes


def _lower_joint(
    problem: GenomeProblem,
    budgets: Sequence[Constraint],
    genomes: IntArray,
    rng: np.random.Generator,
) -> IntArray:
    """Lowering an architecture gene shrinks the subnet (a shallower stage, a narrower block,
    a smaller kernel or resolution); the genes it switches off are then canonical again."""
    layout = problem.layout
    genomes = genomes.copy()
    active = np.arange(len(genomes))
    searched = np.zeros(layout.n_genes, dtype=bool)
    searched[: layout.n_bit_genes] = True
    searched[layout.arch_genes] = True
    while len(active):
        batch = problem.decode(genomes[active])
        ok = total_violation(budgets, batch) <= 0.0
        active, batch = active[~ok], batch.take(~ok)
        if not len(active):
            break
        lowerable = (genomes[active] > layout.lower) & searched & _genes_that_matter(layout, batch)
        stuck = ~lowerable.any(axis=1)
        active, lowerable = active[~stuck], lowerable[~stuck]
        if not len(active):
            break
        # lower a random 1/32 of the lowerable genes at once (at least one): a few steps
        # instead of hundreds on a 200-gene genome, still small enough not to overshoot
        scores = np.where(lowerable, rng.random(lowerable.shape), -1.0)
        rank = np.argsort(np.argsort(-scores, axis=1), axis=1)
        count = np.maximum(1, lowerable.sum(axis=1) // REPAIR_FRACTION)
        genomes[active] -= (rank < count[:, None]) & lowerable
        genomes[active] = layout.canonical(genomes[active])
    return genomes


def _genes_that_matter(layout: GenomeLayout, batch: ConfigBatch) -> npt.NDArray[np.bool_]:
    """Per genome of ``batch``, the genes its architecture does not switch off."""
    n_elastic = len(layout.elastic)
    matter = np.ones((len(batch), layout.n_genes), dtype=bool)
    running = batch.active[:, layout.elastic]
    matter[:, :n_elastic] = running
    matter[:, n_elastic : layout.n_bit_genes] = running
    if layout.n_form_genes > 1:
        matter[:, layout.n_bit_genes : layout.arch_start] = batch.active
    matter[:, layout.arch_genes] = batch.gene_active
    return matter


class DuplicateElimination:
    """Keeps genomes no population member or earlier genome has (pymoo's
    ``DuplicateElimination``), by hashing canonical genomes: one per subnet."""

    def do(self, genomes: IntArray, taken: set[bytes], limit: int | None = None) -> IntArray:
        """The rows of ``genomes`` whose key is not in ``taken``, first occurrences only, at
        most ``limit`` of them; their keys join ``taken``."""
        fresh = np.zeros(len(genomes), dtype=bool)
        kept = 0
        for row, key in enumerate(genome_keys(genomes)):
            if limit is not None and kept >= limit:
                break
            if key not in taken:
                taken.add(key)
                fresh[row] = True
                kept += 1
        new: IntArray = genomes[fresh]
        return new


class DuplicateFreeMating:
    """Mates until ``count`` children are new: neither a parent nor each other's duplicate.

    ``mate(n)`` is the engine's own selection, crossover and mutation making ``n`` children;
    each child is mapped to its subnet's canonical genome, duplicates are dropped and the
    missing ones mated again, for at most :data:`MAX_MATING_ROUNDS` rounds (in a nearly
    converged population fewer than ``count`` may come back).

    Args:
        layout: the genome (its canonical form).
        oversample: children mated per missing one (an engine whose rounded children often
            repeat a parent mates more, so that one round usually suffices).
    """

    def __init__(self, layout: GenomeLayout, oversample: int = 1) -> None:
        self.layout = layout
        self.oversample = oversample
        self.elimination = DuplicateElimination()

    def do(self, mate: Callable[[int], IntArray], count: int, taken: set[bytes]) -> IntArray:
        """Up to ``count`` new children (``taken``: the keys of the parents; it grows)."""
        kept: list[IntArray] = [np.zeros((0, self.layout.n_genes), dtype=np.int64)]
        found = 0
        for _ in range(MAX_MATING_ROUNDS):
            if found >= count:
                break
            children = self.layout.canonical(mate(self.oversample * (count - found)))
            fresh = self.elimination.do(children, taken, count - found)
            kept.append(fresh)
            found += len(fresh)
        return np.concatenate(kept)


def first_population(
    problem: GenomeProblem,
    rng: np.random.Generator,
    n: int,
    sampling: Sampling | None = None,
    repair: Repair | None = None,
) -> IntArray:
    """``n`` distinct genomes that meet every constraint: sampled, repaired, kept if feasible.

    Each round samples twice the genomes still missing (:class:`CeilingSampling` by
    default), repairs them (:class:`BudgetRepair`) and keeps the new ones that meet every
    constraint, for at most :data:`SAMPLING_ROUNDS` rounds. With fewer distinct feasible
    configs than ``n`` (a tiny space), some are repeated.

    Raises:
        InputError: ``n < 1``, or no sampled config meets every constraint (the message names
            the constraints no sampled config met).
    """
    if n < 1:
        raise InputError(f"the population size must be >= 1; got {n}")
    sampling = sampling or CeilingSampling()
    repair = repair or BudgetRepair()
    elimination = DuplicateElimination()
    constraints = tuple(problem.constraints)
    chosen: list[IntArray] = []
    found = 0
    seen: set[bytes] = set()
    tried = 0
    met = np.zeros(len(constraints), dtype=bool)
    for _ in range(SAMPLING_ROUNDS):
        missing = n - found
        if missing <= 0:
            break
        candidates = repair.do(problem, sampling.do(problem, 2 * missing, rng), rng)
        tried += len(candidates)
        if constraints:
            feasible, met_here = _feasibility(constraints, problem.decode(candidates))
            met |= met_here
            candidates = candidates[feasible]
        fresh = elimination.do(candidates, seen, missing)
        chosen.append(fresh)
        found += len(fresh)
    if not found:
        message, field = _no_feasible_message(constraints, met, tried)
        raise InputError(message, field=field)
    population = np.concatenate(chosen).astype(np.int64)
    if len(population) < n:
        # fewer feasible configs than the population (a tiny space): repeat some
        extra = rng.integers(0, len(population), n - len(population))
        population = np.concatenate([population, population[extra]])
    return population


def _feasibility(
    constraints: Sequence[Constraint], batch: ConfigBatch
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Rows meeting every constraint, and per constraint whether any row meets it."""
    total = np.zeros(len(batch), dtype=np.float64)
    met = np.zeros(len(constraints), dtype=bool)
    for index, constraint in enumerate(constraints):
        violation: FloatArray = constraint.violation(batch)
        met[index] = bool((violation <= 0.0).any())
        total += violation
    feasible: npt.NDArray[np.bool_] = total <= 0.0
    return feasible, met


def _no_feasible_message(
    constraints: Sequence[Constraint], met: npt.NDArray[np.bool_], tried: int
) -> tuple[str, str | None]:
    """The message and the field it concerns: the first constraint no sampled config met
    (``{field}`` in the message), or None where each was met by some."""
    missed = [c for c, ok in zip(constraints, met, strict=True) if not ok]
    never = [
        ("{field}" if index == 0 else c.name)
        + f" <= {c.limit:g}"
        + (f" ({c.description})" if c.description else "")
        for index, c in enumerate(missed)
    ]
    if never:
        what = f"none met {', '.join(never)}"
    else:
        what = "each constraint was met by some, never all at once"
    message = f"no config meeting the constraints was found by sampling {tried} configs: {what}"
    return message, missed[0].name if missed else None
