"""The search problem's public import point: objectives, constraints, the problem, its factory."""

from __future__ import annotations

from eqsearch.search.factory import (
    BUDGETS,
    OBJECTIVE_NAMES,
    OBJECTIVES,
    Budget,
    Sources,
    make_problem,
)
from eqsearch.search.objectives import (
    DIRECTIONS,
    BatchFunction,
    Constraint,
    FloatArray,
    Objective,
    accuracy_objective,
    activation_bits_budget,
    activation_compression_objective,
    at_least,
    bitops_budget,
    bitops_objective,
    macs_budget,
    macs_objective,
    size_budget,
    size_objective,
    total_violation,
    weight_bits_budget,
    weight_compression_objective,
)
from eqsearch.search.operators import REPAIR_FRACTION
from eqsearch.search.problem import Evaluation, SearchProblem

__all__ = [
    "BUDGETS",
    "DIRECTIONS",
    "OBJECTIVES",
    "OBJECTIVE_NAMES",
    "REPAIR_FRACTION",
    "BatchFunction",
    "Budget",
    "Constraint",
    "Evaluation",
    "FloatArray",
    "Objective",
    "SearchProblem",
    "Sources",
    "accuracy_objective",
    "activation_bits_budget",
    "activation_compression_objective",
    "at_least",
    "bitops_budget",
    "bitops_objective",
    "macs_budget",
    "macs_objective",
    "make_problem",
    "size_budget",
    "size_objective",
    "total_violation",
    "weight_bits_budget",
    "weight_compression_objective",
]
