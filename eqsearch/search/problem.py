"""The integer-genome search problem: objectives and constraints over the subnets of a space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.search.objectives import Constraint, FloatArray, Objective, total_violation
from eqsearch.search.operators import first_population
from eqsearch.space import ConfigBatch, ElasticSpace, GenomeLayout, IntArray, QuantForm


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
        constraints: rules every returned config meets; any function of the configs, whether
            or not it gets easier as bits go down (see :class:`Constraint`).
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
        return total_violation(self.constraints, batch)

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
        """Raise InputError when the budgets cannot be met, before any search.

        A monotone budget is checked on the lowest-bit subnets of the smallest architecture
        (one per allowed form): one they exceed cannot be met by lowering bits or shrinking
        the architecture, and the message states the smallest reachable value. Constraints
        that are not monotone are decided by sampling, as the first population is (see
        :func:`eqsearch.search.operators.first_population`).
        """
        self._check_monotone_budgets()
        if any(not constraint.monotone for constraint in self.constraints):
            first_population(self, np.random.default_rng(0), 1)

    def _check_monotone_budgets(self) -> None:
        budgets = [constraint for constraint in self.constraints if constraint.monotone]
        if not budgets:
            return
        batch = self.decode(self._lowest_genomes())
        for constraint in budgets:
            smallest = float(constraint.values(batch).min())
            if smallest > constraint.limit + 1e-12:
                what = constraint.description or constraint.name
                raise InputError(
                    f"the budget {{field}} <= {constraint.limit:g} cannot be met: the "
                    f"smallest reachable {what} is {smallest:.2f}",
                    field=constraint.name,
                )

    def _lowest_genomes(self) -> IntArray:
        layout = self._layout
        n_forms = len(layout.forms)
        genomes = np.zeros((n_forms, layout.n_genes), dtype=np.int64)
        if layout.n_form_genes:
            genomes[:, layout.n_bit_genes : layout.arch_start] = np.arange(n_forms)[:, None]
        return genomes

    def initial_population(self, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` distinct genomes that meet every constraint (sampling + repair).

        Each genome's bit genes (and architecture genes) are drawn uniformly below a
        per-genome random ceiling (so the population spans cheap and expensive configs); a
        genome over a monotone budget has randomly chosen genes of its running layers (bits,
        or architecture choices) lowered until it meets it; those meeting every constraint
        are kept (see :func:`eqsearch.search.operators.first_population`). Genomes are
        canonical: one per subnet.

        Raises:
            InputError: a monotone budget below its smallest reachable value, or no sampled
                config meeting every constraint.
        """
        if n < 1:
            raise InputError(f"the population size must be >= 1; got {n}")
        self._check_monotone_budgets()  # the sampling below decides the others
        return first_population(self, rng, n)

    def reference_genomes(self) -> IntArray:
        """Genomes of the uniform-bit subnets (W = A bits) in the first allowed form."""
        space = self.space
        form = self._layout.forms[0]
        shared = sorted(set(space.w_bits) & set(space.a_bits))
        configs = [space.uniform(bits, bits, form) for bits in shared]
        return self._layout.encode(space.batch(configs)) if configs else np.zeros((0, 0), int)
