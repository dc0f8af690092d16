"""The baselines that need no sensitivities: every uniform W/A config, and random search."""

from __future__ import annotations

import numpy as np

from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.resources import check_memory, configs_memory_bytes
from eqsearch.space import ConfigBatch
from eqsearch.strategies.front import candidate_front
from eqsearch.strategies.sensitivity import require_fixed_architecture


def uniform_configs(problem: SearchProblem) -> ConfigBatch:
    """Every uniform config of the problem's forms: each weight × activation bit width of the
    space on every elastic layer (the pinned layers at their pins)."""
    space = problem.space
    require_fixed_architecture(space, "the uniform strategy")
    configs = [
        space.uniform(w_bits, a_bits, form)
        for form in problem.layout.forms
        for w_bits in space.w_bits
        for a_bits in space.a_bits
    ]
    return space.batch(configs)


def uniform_search(problem: SearchProblem) -> ParetoFront:
    """The ``uniform`` strategy: :func:`uniform_configs` within the budgets, as a front."""
    info = {
        "strategy": "uniform",
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
    }
    return candidate_front(problem, uniform_configs(problem), info)


def random_configs(problem: SearchProblem, count: int, seed: int = 0) -> ConfigBatch:
    """``count`` distinct random configs that meet the budgets, drawn as NSGA-II draws its
    first population (``SearchProblem.initial_population``: bits uniform below a random
    ceiling per config, draws over a monotone budget repaired by lowering random genes, those
    meeting every constraint kept)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(f"count must be a positive integer; got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    needed = configs_memory_bytes(count, problem.space.n_layers, problem.layout.n_genes)
    check_memory(needed, f"{count} random configs")
    genomes = problem.initial_population(np.random.default_rng(seed), int(count))
    return problem.decode(genomes)


def random_search(problem: SearchProblem, count: int = 100, *, seed: int = 0) -> ParetoFront:
    """The ``random`` strategy: :func:`random_configs` evaluated into a front."""
    info = {
        "strategy": "random",
        "count": int(count),
        "seed": int(seed),
        "objectives": list(problem.objective_names),
        "constraints": {c.name: c.limit for c in problem.constraints},
        "forms": [str(form) for form in problem.layout.forms],
        "per_layer_forms": problem.layout.per_layer,
    }
    return candidate_front(problem, random_configs(problem, count, seed), info)
