"""What the search optimises: objectives, constraints and the integer-genome search problem."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.oracle import AccuracyOracle
from eqsearch.space import ConfigBatch, ElasticSpace, GenomeLayout, IntArray, QuantForm

if TYPE_CHECKING:
    from eqsearch.latency.table import LatencyTable

FloatArray = npt.NDArray[np.float64]
BatchFunction = Callable[[ConfigBatch], Any]
"""Takes a batch of configs (a ``ConfigBatch``: arrays, and a ``Sequence[SubnetConfig]``) and
returns one number per config."""

DIRECTIONS = ("max", "min")
REPAIR_FRACTION = 32
"""A joint genome's repair lowers one in this many of its lowerable genes per step."""


def _values(name: str, fn: BatchFunction, batch: ConfigBatch, what: str) -> FloatArray:
    values = np.asarray(fn(batch), dtype=np.float64).reshape(-1)
    if values.shape != (len(batch),):
        raise InputError(
            f"{what} {name!r} returned {values.size} values for a batch of {len(batch)} configs"
        )
    return values


@dataclass(frozen=True)
class Objective:
    """One quantity the search optimises.

    Args:
        name: column name in tables and files.
        fn: a batch of configs -> one value per config.
        direction: ``"max"`` or ``"min"``.
        label: axis label for plots (the name by default).
    """

    name: str
    fn: BatchFunction
    direction: str = "min"
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Objective.name must be a non-empty string; got {self.name!r}")
        if not callable(self.fn):
            raise InputError(f"Objective.fn must be callable; got {self.fn!r}")
        if self.direction not in DIRECTIONS:
            raise InputError(
                f"Objective.direction must be one of {DIRECTIONS}; got {self.direction!r}"
            )

    @property
    def sign(self) -> float:
        """+1 for a minimised objective, -1 for a maximised one (the engines minimise)."""
        return 1.0 if self.direction == "min" else -1.0

    def values(self, batch: ConfigBatch) -> FloatArray:
        """One float per config of ``batch``."""
        return _values(self.name, self.fn, batch, "objective")


@dataclass(frozen=True)
class Constraint:
    """A budget: a config is feasible where ``fn(configs) <= limit``.

    Args:
        name: column name in tables and files.
        fn: a batch of configs -> one value per config.
        limit: the largest allowed value.
        description: what ``fn`` measures, for error messages (the name by default).
    """

    name: str
    fn: BatchFunction
    limit: float
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Constraint.name must be a non-empty string; got {self.name!r}")
        if not callable(self.fn):
            raise InputError(f"Constraint.fn must be callable; got {self.fn!r}")
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)):
            raise InputError(f"Constraint.limit must be a number; got {limit!r}")
        if not np.isfinite(limit):
            raise InputError(f"Constraint.limit must be finite; got {limit!r}")
        object.__setattr__(self, "limit", float(limit))

    def values(self, batch: ConfigBatch) -> FloatArray:
        """One float per config of ``batch``."""
        return _values(self.name, self.fn, batch, "constraint")

    def violation(self, batch: ConfigBatch) -> FloatArray:
        """How far each config exceeds the limit, relative to it (0 where feasible)."""
        excess = np.maximum(self.values(batch) - self.limit, 0.0)
        scaled: FloatArray = excess / max(abs(self.limit), 1e-12)
        return scaled


# -- built-in objectives and constraints ---------------------------------------------------


def accuracy_objective(oracle: AccuracyOracle, name: str = "accuracy") -> Objective:
    """Top-1 accuracy (percent) from any oracle, maximised."""
    return Objective(name, oracle.evaluate, "max", "top-1 accuracy (%)")


def bitops_objective() -> Objective:
    """BitOPs per image (``Σ MACs·b_w·b_a``), minimised."""
    return Objective("bitops", lambda batch: costs.bitops(batch.space, batch), "min", "BitOPs")


def size_objective() -> Objective:
    """Packed model size in bytes, minimised."""
    return Objective(
        "size_bytes", lambda batch: costs.model_size_bytes(batch.space, batch), "min", "bytes"
    )


def weight_compression_objective() -> Objective:
    """W-Comp (``32·Σn / Σ(n·b_w)``), maximised."""
    return Objective(
        "w_comp", lambda batch: costs.weight_compression(batch.space, batch), "max", "W-Comp"
    )


def activation_compression_objective() -> Objective:
    """A-Comp (``32·Σm / Σ(m·b_a)``), maximised."""
    return Objective(
        "a_comp", lambda batch: costs.activation_compression(batch.space, batch), "max", "A-Comp"
    )


def macs_objective() -> Objective:
    """MACs per image of the architecture alone (a joint space's size), minimised."""
    return Objective("macs", lambda batch: costs.macs(batch.space, batch), "min", "MACs")


COST_OBJECTIVES: dict[str, Callable[[], Objective]] = {
    "bitops": bitops_objective,
    "size": size_objective,
    "w_comp": weight_compression_objective,
    "a_comp": activation_compression_objective,
    "macs": macs_objective,
}
"""Built-in cost objectives by their ``--objectives`` name (``accuracy`` needs an oracle)."""

OBJECTIVE_NAMES = ("accuracy", *COST_OBJECTIVES, "latency")
"""``latency`` needs a measured latency table (``eqsearch latency build``)."""


def weight_bits_budget(limit: float) -> Constraint:
    """Average weight bits of the searched layers ``<= limit`` (the ``--w-bits`` budget)."""
    return Constraint(
        "w_bits",
        lambda batch: costs.average_weight_bits(batch.space, batch),
        limit,
        "average weight bits",
    )


def activation_bits_budget(limit: float) -> Constraint:
    """Average activation bits of the searched layers ``<= limit`` (the ``--a-bits`` budget)."""
    return Constraint(
        "a_bits",
        lambda batch: costs.average_activation_bits(batch.space, batch),
        limit,
        "average activation bits",
    )


def bitops_budget(limit: float) -> Constraint:
    """BitOPs per image ``<= limit`` (the ``--bitops`` budget; named ``bitops_budget``, so
    that BitOPs can be an objective too)."""
    return Constraint(
        "bitops_budget", lambda batch: costs.bitops(batch.space, batch), limit, "BitOPs"
    )


def size_budget(limit: float) -> Constraint:
    """Packed model size ``<= limit`` bytes (the ``--size`` budget)."""
    return Constraint(
        "size_budget",
        lambda batch: costs.model_size_bytes(batch.space, batch),
        limit,
        "model size in bytes",
    )


def macs_budget(limit: float) -> Constraint:
    """MACs per image of the architecture ``<= limit`` (the ``--macs`` budget)."""
    return Constraint("macs_budget", lambda batch: costs.macs(batch.space, batch), limit, "MACs")


def _require_table(table: LatencyTable | None) -> LatencyTable:
    if table is None:
        raise InputError(
            "latency needs a measured latency table of this space (build one with "
            "`eqsearch latency build`)"
        )
    return table


# -- the problem ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """A population's objective values and constraint violations.

    ``values`` holds the objectives as reported (``(n, m)``), ``minimised`` the same signed so
    that lower is better, ``violation`` the summed relative constraint excess (0 = feasible).
    """

    batch: ConfigBatch
    values: FloatArray
    minimised: FloatArray
    violation: FloatArray

    @property
    def feasible(self) -> npt.NDArray[np.bool_]:
        """Rows that meet every constraint."""
        result: npt.NDArray[np.bool_] = self.violation <= 0.0
        return result


@dataclass(frozen=True)
class SearchProblem:
    """A multi-objective search over the subnets of a space.

    Args:
        space: the elastic space.
        objectives: what to optimise (at least one; unique names).
        constraints: budgets every returned config meets.
        forms: a fixed form, the forms of a hardware target, or None for every form of the
            space (the form becomes a gene).
        per_layer_forms: with several forms, one form gene per layer instead of one global gene.
    """

    space: ElasticSpace
    objectives: Sequence[Objective]
    constraints: Sequence[Constraint] = ()
    forms: QuantForm | Sequence[QuantForm] | None = None
    per_layer_forms: bool = False
    _layout: GenomeLayout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.space, ElasticSpace):
            raise InputError(f"SearchProblem.space must be an ElasticSpace; got {self.space!r}")
        objectives = tuple(self.objectives)
        constraints = tuple(self.constraints)
        if not objectives or not all(isinstance(o, Objective) for o in objectives):
            raise InputError("SearchProblem.objectives must hold at least one Objective")
        if not all(isinstance(c, Constraint) for c in constraints):
            raise InputError("SearchProblem.constraints must hold Constraint objects only")
        names = [o.name for o in objectives] + [c.name for c in constraints]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise InputError(
                f"SearchProblem objective and constraint names must be unique; repeated: "
                f"{', '.join(duplicated)}"
            )
        forms = self.forms
        if forms is not None and not isinstance(forms, QuantForm):
            forms = tuple(forms)
        object.__setattr__(self, "objectives", objectives)
        object.__setattr__(self, "constraints", constraints)
        object.__setattr__(self, "forms", forms)
        object.__setattr__(
            self,
            "_layout",
            self.space.genome_layout(forms, per_layer=bool(self.per_layer_forms)),
        )

    @property
    def layout(self) -> GenomeLayout:
        """The integer genome: bit genes of the searched layers, then form genes."""
        return self._layout

    @property
    def objective_names(self) -> tuple[str, ...]:
        """Objective names in order."""
        return tuple(o.name for o in self.objectives)

    @cached_property
    def signs(self) -> FloatArray:
        """Per objective: +1 minimised, -1 maximised."""
        return np.asarray([o.sign for o in self.objectives], dtype=np.float64)

    def decode(self, genomes: npt.ArrayLike) -> ConfigBatch:
        """Configs of integer genomes."""
        return self._layout.decode(genomes)

    def violation(self, batch: ConfigBatch) -> FloatArray:
        """Summed relative excess over every constraint (0 where a config is feasible)."""
        total = np.zeros(len(batch), dtype=np.float64)
        for constraint in self.constraints:
            total += constraint.violation(batch)
        return total

    def evaluate(self, genomes: npt.ArrayLike) -> Evaluation:
        """Decode a population and evaluate it in one call per objective and constraint."""
        batch = self.decode(genomes)
        return self.evaluate_batch(batch)

    def evaluate_batch(self, batch: ConfigBatch) -> Evaluation:
        """Objectives and violations of a batch of configs of the space."""
        n = len(batch)
        values = np.empty((n, len(self.objectives)), dtype=np.float64)
        if n:
            for column, objective in enumerate(self.objectives):
                values[:, column] = objective.values(batch)
        return Evaluation(batch, values, values * self.signs, self.violation(batch))

    def check_feasible(self) -> None:
        """Raise ValueError when no config can meet the constraints.

        Checks the lowest-bit subnets of the smallest architecture (one per allowed form): a
        budget they exceed cannot be met by lowering bits or shrinking the architecture. The
        message states the smallest reachable value.
        """
        if not self.constraints:
            return
        lowest = self._lowest_genomes()
        batch = self.decode(lowest)
        for constraint in self.constraints:
            smallest = float(constraint.values(batch).min())
            if smallest > constraint.limit + 1e-12:
                what = constraint.description or constraint.name
                raise InputError(
                    f"the budget {constraint.name} <= {constraint.limit:g} cannot be met: the "
                    f"smallest reachable {what} is {smallest:.2f}"
                )

    def _lowest_genomes(self) -> IntArray:
        layout = self._layout
        n_forms = len(layout.forms)
        genomes = np.zeros((n_forms, layout.n_genes), dtype=np.int64)
        if layout.n_form_genes:
            genomes[:, layout.n_bit_genes : layout.arch_start] = np.arange(n_forms)[:, None]
        return genomes

    def initial_population(self, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` distinct genomes that meet every constraint (Monte-Carlo sampling + repair).

        Each genome's bit genes (and architecture genes) are drawn uniformly below a
        per-genome random ceiling (so the population spans cheap and expensive configs); a
        genome that breaks a budget has randomly chosen genes of its running layers (bits, or
        architecture choices) lowered one step at a time until it meets it. Genomes are
        canonical: one per subnet.
        """
        if n < 1:
            raise InputError(f"the population size must be >= 1; got {n}")
        self.check_feasible()
        chosen: list[IntArray] = []
        seen: set[bytes] = set()
        for _ in range(50):
            missing = n - len(chosen)
            if missing <= 0:
                break
            for row in self._repair(rng, self._draw(rng, 2 * missing)):
                key = row.astype(np.int8).tobytes()
                if key not in seen and len(chosen) < n:
                    seen.add(key)
                    chosen.append(row)
        if not chosen:
            raise InputError("no config meeting the constraints was found by sampling")
        population = np.stack(chosen).astype(np.int64)
        if len(population) < n:
            # fewer feasible configs than the population (a tiny space): repeat some
            extra = rng.integers(0, len(population), n - len(population))
            population = np.concatenate([population, population[extra]])
        return population

    def _draw(self, rng: np.random.Generator, count: int) -> IntArray:
        layout = self._layout
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

    def _repair(self, rng: np.random.Generator, genomes: IntArray) -> IntArray:
        """Lower random bit genes of infeasible genomes until they are feasible; drop the rest."""
        if not self.constraints:
            return genomes
        if self._layout.n_arch_genes:
            return self._repair_joint(rng, genomes)
        layout = self._layout
        genomes = genomes.copy()
        active = np.arange(len(genomes))
        feasible = np.zeros(len(genomes), dtype=bool)
        while len(active):
            violation = self.violation(self.decode(genomes[active]))
            ok = violation <= 0.0
            feasible[active[ok]] = True
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
        return genomes[feasible]

    def _repair_joint(self, rng: np.random.Generator, genomes: IntArray) -> IntArray:
        """Lower random genes that matter (bits of running layers, active architecture genes)
        of infeasible genomes until they are feasible; drop the rest.

        Lowering an architecture gene shrinks the subnet (a shallower stage, a narrower block,
        a smaller kernel or resolution); the genes it switches off are then canonical again.
        """
        layout = self._layout
        genomes = genomes.copy()
        active = np.arange(len(genomes))
        feasible = np.zeros(len(genomes), dtype=bool)
        searched = np.zeros(layout.n_genes, dtype=bool)
        searched[: layout.n_bit_genes] = True
        searched[layout.arch_genes] = True
        while len(active):
            batch = self.decode(genomes[active])
            ok = self.violation(batch) <= 0.0
            feasible[active[ok]] = True
            active, batch = active[~ok], batch.take(~ok)
            if not len(active):
                break
            lowerable = (
                (genomes[active] > layout.lower) & searched & _genes_that_matter(layout, batch)
            )
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
        return genomes[feasible]

    def reference_genomes(self) -> IntArray:
        """Genomes of the uniform-bit subnets (W = A bits) in the first allowed form."""
        space = self.space
        form = self._layout.forms[0]
        shared = sorted(set(space.w_bits) & set(space.a_bits))
        configs = [space.uniform(bits, bits, form) for bits in shared]
        return self._layout.encode(space.batch(configs)) if configs else np.zeros((0, 0), int)


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


def make_problem(
    space: ElasticSpace,
    oracle: AccuracyOracle | None = None,
    *,
    objectives: Sequence[str] = ("accuracy", "bitops"),
    w_bits: float | None = None,
    a_bits: float | None = None,
    bitops: float | None = None,
    size_bytes: float | None = None,
    macs: float | None = None,
    target: str = "any",
    forms_per_layer: bool = False,
    latency: LatencyTable | None = None,
    latency_ms: float | None = None,
) -> SearchProblem:
    """The problem ``eqsearch nsga`` solves, from names and budgets.

    Args:
        space: the supernet's space.
        oracle: where accuracy comes from (needed when ``"accuracy"`` is an objective).
        objectives: names from :data:`OBJECTIVE_NAMES`.
        w_bits, a_bits: average-bit budgets of the searched layers (None: unconstrained).
        bitops, size_bytes, macs: budgets on BitOPs, packed size and (in a joint space, the
            architecture's) MACs per image (None: unconstrained).
        target: a hardware preset of ``eqsearch.targets`` fixing the allowed forms (or a
            runtime probed on this machine: its integer-kernel forms).
        forms_per_layer: with several allowed forms, choose one per layer.
        latency: a latency table of ``space`` (for the ``latency`` objective and budget).
        latency_ms: budget on the table's predicted milliseconds per inference.

    Raises:
        ValueError: an unknown objective or target, a missing oracle, or a budget below the
            smallest reachable average (the message states that average).
    """
    from eqsearch.latency.objective import latency_budget, latency_objective
    from eqsearch.targets import get_target

    if latency is not None:
        latency.check_space(space)
    names = list(dict.fromkeys(objectives))
    if not names:
        raise InputError(f"objectives must name at least one of {', '.join(OBJECTIVE_NAMES)}")
    chosen: list[Objective] = []
    for name in names:
        if name == "accuracy":
            if oracle is None:
                raise InputError("the accuracy objective needs an oracle (a predictor or supernet)")
            chosen.append(accuracy_objective(oracle))
        elif name in COST_OBJECTIVES:
            chosen.append(COST_OBJECTIVES[name]())
        elif name == "latency":
            chosen.append(latency_objective(_require_table(latency)))
        else:
            raise InputError(f"objectives must be among {', '.join(OBJECTIVE_NAMES)}; got {name!r}")
    constraints: list[Constraint] = []
    for flag, limit, budget, unit in (
        ("w_bits", w_bits, weight_bits_budget, "bits"),
        ("a_bits", a_bits, activation_bits_budget, "bits"),
        ("bitops", bitops, bitops_budget, "BitOPs"),
        ("size_bytes", size_bytes, size_budget, "bytes"),
        ("macs", macs, macs_budget, "MACs"),
    ):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise InputError(f"{flag} must be a positive number of {unit}; got {limit!r}")
        constraints.append(budget(float(limit)))
    if latency_ms is not None:
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)):
            raise InputError(f"latency_ms must be a positive number of ms; got {latency_ms!r}")
        if not latency_ms > 0:
            raise InputError(f"latency_ms must be a positive number of ms; got {latency_ms!r}")
        constraints.append(latency_budget(_require_table(latency), float(latency_ms)))
    forms = get_target(target).forms_in(space)
    problem = SearchProblem(
        space, chosen, constraints, forms=forms, per_layer_forms=forms_per_layer
    )
    problem.check_feasible()
    return problem
