"""Costs as sums over layers: per-layer tables of any additive cost, checked to add up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.problem import Constraint, SearchProblem
from eqsearch.registry import Registry
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace, QuantForm
from eqsearch.space.arrays import FloatArray, IntArray

CostFunction = Callable[[ConfigBatch], npt.ArrayLike]

COSTS: Registry[CostFunction] = Registry("cost")
"""The costs a strategy can sweep, by name: average weight / activation bits of the searched
layers, BitOPs, packed size in bytes."""
COSTS.add("w_bits", lambda batch: costs.average_weight_bits(batch.space, batch))
COSTS.add("a_bits", lambda batch: costs.average_activation_bits(batch.space, batch))
COSTS.add("bitops", lambda batch: costs.bitops(batch.space, batch))
COSTS.add("size", lambda batch: costs.model_size_bytes(batch.space, batch))

SWEEP_FOR_OBJECTIVE = {
    "bitops": "bitops",
    "size_bytes": "size",
    "w_comp": "w_bits",
    "a_comp": "a_bits",
    "w_bits": "w_bits",
    "a_bits": "a_bits",
    "latency": "latency",
}
"""The cost to sweep for a problem's cost objective (W-Comp falls as average weight bits
rise, with the pinned layers fixed); ``latency`` sweeps the problem's latency objective (a
measured table: a sum over layers too)."""
SWEEPS = (*COSTS, "latency")
"""What ``--sweep`` takes."""

ADDITIVITY_CHECKS = 32
"""Random configs on which a table's sums are compared with the cost itself."""


def default_sweep(problem: SearchProblem) -> str:
    """The cost a strategy sweeps for ``problem``: its first cost objective's, else BitOPs."""
    for name in problem.objective_names:
        if name in SWEEP_FOR_OBJECTIVE:
            return SWEEP_FOR_OBJECTIVE[name]
    return "bitops"


@dataclass(frozen=True)
class LayerCosts:
    """A cost that is a sum over layers, tabulated for one form.

    ``cost(config) = base + Σ_l table[l, w_index(l), a_index(l)]`` over the elastic layers,
    with ``base`` the cost of the highest-bit config and ``table[l, i, j]`` the change when
    elastic layer ``l`` alone takes the ``i``-th weight and ``j``-th activation bit width.

    Attributes:
        name: the cost's or constraint's name.
        base: the cost of the highest-bit config of the form.
        table: ``(n_elastic, n_w_bits, n_a_bits)``.
        limit: the budget (infinite for a swept cost).
    """

    name: str
    base: float
    table: FloatArray
    limit: float = float("inf")

    @property
    def smallest(self) -> float:
        """The cost of the lowest-bit config (every cost here falls with bits)."""
        return float(self.base + self.table.min(axis=(1, 2)).sum())

    @property
    def largest(self) -> float:
        """The cost of the highest-bit config."""
        return float(self.base + self.table.max(axis=(1, 2)).sum())

    @property
    def span(self) -> float:
        """``largest − smallest``, or 1 where they are equal (for normalising)."""
        spread = self.largest - self.smallest
        return spread if spread > 0 else 1.0

    def of(self, w_index: IntArray, a_index: IntArray) -> FloatArray:
        """The cost of configs given as per-elastic-layer bit indices ``(n, n_elastic)``."""
        layers = np.arange(self.table.shape[0])[None, :]
        total: FloatArray = self.base + self.table[layers, w_index, a_index].sum(axis=1)
        return total


def index_configs(
    space: ElasticSpace, form: QuantForm, w_index: IntArray, a_index: IntArray
) -> ConfigBatch:
    """Configs in ``form`` from per-elastic-layer bit indices ``(n, n_elastic)``."""
    w_index = np.atleast_2d(np.asarray(w_index, dtype=np.int64))
    a_index = np.atleast_2d(np.asarray(a_index, dtype=np.int64))
    n = w_index.shape[0]
    elastic = list(space.elastic_indices)
    w = np.full((n, space.n_layers), space.w_bits[-1], dtype=np.int64)
    a = np.full((n, space.n_layers), space.a_bits[-1], dtype=np.int64)
    w[:, elastic] = np.asarray(space.w_bits, dtype=np.int64)[w_index]
    a[:, elastic] = np.asarray(space.a_bits, dtype=np.int64)[a_index]
    form_index = np.full_like(w, ALL_FORMS.index(space.check_form(form)))
    return ConfigBatch.from_arrays(space, w, a, form_index)


def layer_costs(
    space: ElasticSpace,
    form: QuantForm,
    fn: CostFunction,
    name: str,
    *,
    limit: float = float("inf"),
    seed: int = 0,
) -> LayerCosts:
    """Tabulate ``fn`` per elastic layer and bit pair in ``form``, and check that it adds up.

    The table is read off configs that differ from the highest-bit config in one layer; the
    sums are then compared with ``fn`` itself on the lowest-bit config and
    :data:`ADDITIVITY_CHECKS` random configs.

    Raises:
        ValueError: ``fn`` is not a sum over layers (a strategy's linear model cannot hold it).
    """
    n_elastic = len(space.elastic_indices)
    n_w, n_a = len(space.w_bits), len(space.a_bits)
    layer, w_option, a_option = np.meshgrid(
        np.arange(n_elastic), np.arange(n_w), np.arange(n_a), indexing="ij"
    )
    w_index = np.full((layer.size, n_elastic), n_w - 1, dtype=np.int64)
    a_index = np.full((layer.size, n_elastic), n_a - 1, dtype=np.int64)
    rows = np.arange(layer.size)
    w_index[rows, layer.ravel()] = w_option.ravel()
    a_index[rows, layer.ravel()] = a_option.ravel()
    top_w = np.full((1, n_elastic), n_w - 1, dtype=np.int64)
    top_a = np.full((1, n_elastic), n_a - 1, dtype=np.int64)
    base = float(np.asarray(fn(index_configs(space, form, top_w, top_a)), np.float64).ravel()[0])
    values = np.asarray(fn(index_configs(space, form, w_index, a_index)), dtype=np.float64)
    table = (values.reshape(-1) - base).reshape(n_elastic, n_w, n_a)
    result = LayerCosts(name, base, table, limit)
    rng = np.random.default_rng(seed)
    check_w = np.concatenate(
        [np.zeros((1, n_elastic), np.int64), rng.integers(0, n_w, (ADDITIVITY_CHECKS, n_elastic))]
    )
    check_a = np.concatenate(
        [np.zeros((1, n_elastic), np.int64), rng.integers(0, n_a, (ADDITIVITY_CHECKS, n_elastic))]
    )
    actual = np.asarray(fn(index_configs(space, form, check_w, check_a)), dtype=np.float64)
    predicted = result.of(check_w, check_a)
    scale = max(1.0, float(np.abs(values).max()), abs(base))
    if not np.allclose(actual.reshape(-1), predicted, rtol=1e-9, atol=1e-9 * scale):
        raise InputError(
            f"{name} is not a sum over layers, so the ilp and greedy strategies cannot budget "
            "it; use budgets on average bits, BitOPs or size, or search with nsga"
        )
    return result


def constraint_costs(problem: SearchProblem, form: QuantForm) -> list[LayerCosts]:
    """Tables of every constraint of ``problem`` in ``form`` (each with its limit)."""
    return [
        _constraint_table(problem.space, form, constraint) for constraint in problem.constraints
    ]


def _constraint_table(space: ElasticSpace, form: QuantForm, constraint: Constraint) -> LayerCosts:
    return layer_costs(space, form, constraint.fn, constraint.name, limit=constraint.limit)


def sweep_costs(
    space: ElasticSpace, form: QuantForm, sweep: str, problem: SearchProblem | None = None
) -> LayerCosts:
    """The table of the swept cost: a name of :data:`COSTS`, or of one of ``problem``'s
    objectives (``latency``)."""
    objectives = {o.name: o for o in problem.objectives} if problem is not None else {}
    if sweep in COSTS:
        return layer_costs(space, form, COSTS[sweep], sweep)
    if sweep in objectives and objectives[sweep].direction == "min":
        return layer_costs(space, form, objectives[sweep].fn, sweep)
    raise InputError(
        f"sweep must be one of {', '.join(COSTS)} (or latency, with a latency objective); "
        f"got {sweep!r}"
    )
