"""What users would pick instead of NSGA-II: sensitivity ILP (HAWQ-V3), greedy, uniform, random.

Every strategy takes the same :class:`~eqsearch.problem.SearchProblem` as ``nsga2`` (space,
objectives with their oracle, budgets, forms) and returns the same
:class:`~eqsearch.pareto.ParetoFront`.
"""

from __future__ import annotations

from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.search.problem import SearchProblem
from eqsearch.search.solvers import SOLVERS, get_solver, register_solver, solver_names
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

register_solver("ilp", family="strategy")(ilp_search)
register_solver("greedy", family="strategy")(greedy_search)
register_solver("uniform", family="strategy")(uniform_search)
register_solver("random", family="strategy")(random_search)

STRATEGIES = solver_names("strategy")
"""Strategy names, as ``eqsearch strategy NAME`` takes them (solvers of the ``strategy``
family)."""
NEEDS_SENSITIVITIES = tuple(
    name for name in STRATEGIES if "sensitivities" in SOLVERS[name].required
)


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
    """Run one strategy by name (the registered solver, given the settings it takes).

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
    solver = get_solver(name, "strategy")
    if "sensitivities" in solver.required and sensitivities is None:
        raise InputError(f"the {name} strategy needs per-layer sensitivities")
    offered = {
        "sensitivities": sensitivities,
        "sweep": sweep,
        "budgets": budgets,
        "count": count,
        "seed": seed,
    }
    settings = {
        key: value for key, value in offered.items() if key in solver.settings and value is not None
    }
    return solver(problem, **settings)


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
