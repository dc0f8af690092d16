"""The problem the commands solve, from objective names and budgets: the registries behind it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eqsearch.errors import InputError
from eqsearch.oracle import AccuracyOracle
from eqsearch.registry import Registry
from eqsearch.search.objectives import (
    Constraint,
    Objective,
    accuracy_objective,
    activation_bits_budget,
    activation_compression_objective,
    bitops_budget,
    bitops_objective,
    latency_budget,
    latency_objective,
    macs_budget,
    macs_objective,
    size_budget,
    size_objective,
    weight_bits_budget,
    weight_compression_objective,
)
from eqsearch.search.problem import SearchProblem
from eqsearch.space import ElasticSpace
from eqsearch.targets import get_target

if TYPE_CHECKING:
    from eqsearch.latency.table import LatencyTable


@dataclass(frozen=True)
class Sources:
    """What registered objectives and budgets are computed from, beside the configs."""

    space: ElasticSpace
    oracle: AccuracyOracle | None = None
    latency: LatencyTable | None = None

    def need_oracle(self) -> AccuracyOracle:
        """The oracle; an InputError when there is none."""
        if self.oracle is None:
            raise InputError("the accuracy objective needs an oracle (a predictor or supernet)")
        return self.oracle

    def need_latency(self) -> LatencyTable:
        """The measured latency table; an InputError when there is none."""
        if self.latency is None:
            raise InputError(
                "latency needs a measured latency table of this space (build one with "
                "`eqsearch latency build`)"
            )
        return self.latency


def _latency_objective(sources: Sources) -> Objective:
    return latency_objective(sources.need_latency())


def _latency_budget(limit: float, sources: Sources) -> Constraint:
    return latency_budget(sources.need_latency(), limit)


@dataclass(frozen=True)
class Budget:
    """A registered budget: ``make_problem(..., name=limit)`` adds ``build(limit, sources)``.

    Args:
        unit: what the limit counts, for error messages.
        build: the constraint of a limit.
    """

    unit: str
    build: Callable[[float, Sources], Constraint]


OBJECTIVES: Registry[Callable[[Sources], Objective]] = Registry("objective")
"""Objectives by their ``--objectives`` name: each builds its :class:`Objective` from the
:class:`Sources`. A new objective is one ``OBJECTIVES.add(name, factory)``."""

OBJECTIVES.add("accuracy", lambda sources: accuracy_objective(sources.need_oracle()))
OBJECTIVES.add("bitops", lambda sources: bitops_objective())
OBJECTIVES.add("size", lambda sources: size_objective())
OBJECTIVES.add("w_comp", lambda sources: weight_compression_objective())
OBJECTIVES.add("a_comp", lambda sources: activation_compression_objective())
OBJECTIVES.add("macs", lambda sources: macs_objective())
OBJECTIVES.add("latency", _latency_objective)

OBJECTIVE_NAMES = tuple(OBJECTIVES)
"""The built-in objective names."""

BUDGETS: Registry[Budget] = Registry("budget")
"""Budgets by their ``make_problem`` keyword, in the order their constraints take. A new
budget is one ``BUDGETS.add(keyword, Budget(unit, build))``."""

BUDGETS.add("w_bits", Budget("bits", lambda limit, sources: weight_bits_budget(limit)))
BUDGETS.add("a_bits", Budget("bits", lambda limit, sources: activation_bits_budget(limit)))
BUDGETS.add("bitops", Budget("BitOPs", lambda limit, sources: bitops_budget(limit)))
BUDGETS.add("size_bytes", Budget("bytes", lambda limit, sources: size_budget(limit)))
BUDGETS.add("macs", Budget("MACs", lambda limit, sources: macs_budget(limit)))
BUDGETS.add("latency_ms", Budget("ms", _latency_budget))


def make_problem(
    space: ElasticSpace,
    oracle: AccuracyOracle | None = None,
    *,
    objectives: Sequence[str] = ("accuracy", "bitops"),
    target: str = "any",
    forms_per_layer: bool = False,
    latency: LatencyTable | None = None,
    **budgets: float | None,
) -> SearchProblem:
    """The problem ``eqsearch nsga`` solves, from names and budgets.

    Args:
        space: the supernet's space.
        oracle: where accuracy comes from (needed when ``"accuracy"`` is an objective).
        objectives: names of :data:`OBJECTIVES`.
        target: a hardware preset of ``eqsearch.targets`` fixing the allowed forms.
        forms_per_layer: with several allowed forms, choose one per layer.
        latency: a latency table measured on a runtime for ``space`` (``eqsearch latency
            build``), for the ``latency`` objective and the ``latency_ms`` budget.
        **budgets: limits by the names of :data:`BUDGETS` (None: unconstrained):
            ``w_bits``, ``a_bits`` (average bits of the searched layers), ``bitops``,
            ``size_bytes`` and ``macs`` (of a joint space's architecture) per image,
            ``latency_ms`` (the latency table's predicted milliseconds per inference).

    Raises:
        ValueError: an unknown objective, budget or target, a missing oracle, or a budget
            below the smallest reachable value (the message states that value).
    """
    unknown = sorted(set(budgets) - set(BUDGETS))
    if unknown:
        raise InputError(f"budgets must be among {', '.join(BUDGETS)}; got {unknown[0]!r}")
    if latency is not None:
        latency.check_space(space)
    sources = Sources(space, oracle, latency)
    names = list(dict.fromkeys(objectives))
    if not names:
        raise InputError(f"objectives must name at least one of {', '.join(OBJECTIVES)}")
    chosen: list[Objective] = []
    for name in names:
        if name not in OBJECTIVES:
            raise InputError(f"objectives must be among {', '.join(OBJECTIVES)}; got {name!r}")
        chosen.append(OBJECTIVES[name](sources))
    constraints: list[Constraint] = []
    for flag, budget in BUDGETS.items():
        limit = budgets.get(flag)
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise InputError(
                f"{{field}} must be a positive number of {budget.unit}; got {limit!r}", field=flag
            )
        constraints.append(budget.build(float(limit), sources))
    forms = get_target(target).forms_in(space)
    problem = SearchProblem(
        space, chosen, constraints, forms=forms, per_layer_forms=forms_per_layer
    )
    problem.check_feasible()
    return problem
