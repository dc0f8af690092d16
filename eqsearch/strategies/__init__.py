"""What users would pick instead of NSGA-II: sensitivity ILP (HAWQ-V3), greedy, uniform, random.

Every strategy takes the same :class:`~eqsearch.problem.SearchProblem` as ``nsga2`` (space,
objectives with their oracle, budgets, forms) and returns the same
:class:`~eqsearch.pareto.ParetoFront`.
"""

from __future__ import annotations

from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.strategies.additive import COSTS, LayerCosts, default_sweep, layer_costs
from eqsearch.strategies.baselines import (
    random_configs,
    random_search,
    uniform_configs,
    uniform_search,
)
from eqsearch.strategies.greedy import greedy_configs, greedy_path, greedy_search
from eqsearch.strategies.ilp import ilp_configs, ilp_search, min_sensitivity_choices
from eqsearch.strategies.sensitivity import (
    METHODS,
    Sensitivities,
    measured_sensitivities,
    one_layer_lowered,
    require_fixed_architecture,
)

STRATEGIES = ("ilp", "greedy", "uniform", "random")
"""Strategy names, as ``eqsearch strategy NAME`` takes them."""
NEEDS_SENSITIVITIES = ("ilp", "greedy")


def run_strategy(
    name: str,
    problem: SearchProblem,
    *,
    sensitivities: Sensitivities | None = None,
    sweep: str | None = None,
    budgets: int | None = None,
    count: int = 100,
    seed: int = 0,
) -> ParetoFront:
    """Run one strategy by name.

    Args:
        name: one of :data:`STRATEGIES`.
        problem: what to optimise (as for ``nsga2``).
        sensitivities: for ``ilp`` and ``greedy``.
        sweep: the cost ``ilp`` budgets and ``greedy`` saves (default: the problem's cost
            objective's, see ``default_sweep``).
        budgets: budget levels of ``ilp`` (20 by default) and of ``greedy`` (its pick per
            level; by default its whole curve).
        count, seed: configs and seed of ``random``.

    Raises:
        ValueError: an unknown name, or missing sensitivities.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name in NEEDS_SENSITIVITIES:
        if sensitivities is None:
            raise ValueError(f"the {name} strategy needs per-layer sensitivities")
        if name == "ilp":
            return ilp_search(problem, sensitivities, sweep=sweep, budgets=budgets or 20)
        return greedy_search(problem, sensitivities, sweep=sweep, budgets=budgets)
    if name == "uniform":
        return uniform_search(problem)
    return random_search(problem, count, seed=seed)


__all__ = [
    "COSTS",
    "METHODS",
    "NEEDS_SENSITIVITIES",
    "STRATEGIES",
    "LayerCosts",
    "Sensitivities",
    "default_sweep",
    "greedy_configs",
    "greedy_path",
    "greedy_search",
    "ilp_configs",
    "ilp_search",
    "layer_costs",
    "measured_sensitivities",
    "min_sensitivity_choices",
    "one_layer_lowered",
    "random_configs",
    "random_search",
    "require_fixed_architecture",
    "run_strategy",
    "uniform_configs",
    "uniform_search",
]
