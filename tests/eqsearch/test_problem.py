"""Objectives, constraints, the search problem and hardware targets."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.problem import (
    Constraint,
    Objective,
    SearchProblem,
    make_problem,
    weight_bits_budget,
)
from eqsearch.space import QuantForm
from eqsearch.targets import TARGETS, get_target

from .search_fixtures import AnalyticOracle, enumerable_space, problem_under_budget


def test_objective_and_constraint_validation() -> None:
    with pytest.raises(ValueError, match=r"Objective.direction must be one of \('max', 'min'\)"):
        Objective("latency", len, "lower")
    with pytest.raises(ValueError, match=r"Objective\.name must be a non-empty string"):
        Objective("", len)
    with pytest.raises(ValueError, match=r"Constraint\.limit must be a number"):
        Constraint("latency", len, "fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Constraint\.limit must be finite"):
        Constraint("latency", len, float("inf"))
    space = enumerable_space()
    with pytest.raises(ValueError, match="repeated: w_bits"):
        SearchProblem(space, [Objective("w_bits", len)], [weight_bits_budget(3)])
    with pytest.raises(ValueError, match="at least one Objective"):
        SearchProblem(space, [])


def test_an_objective_must_return_one_value_per_config() -> None:
    space = enumerable_space()
    problem = SearchProblem(space, [Objective("broken", lambda batch: [1.0, 2.0])])
    with pytest.raises(ValueError, match="'broken' returned 2 values for a batch of 3 configs"):
        problem.evaluate(problem.layout.random(0, 3))


def test_evaluation_signs_and_violation() -> None:
    problem = problem_under_budget(w_bits=3.0)
    space = problem.space
    configs = [space.uniform(2, 2), space.uniform(4, 8), space.uniform(8, 8)]
    evaluation = problem.evaluate_batch(space.batch(configs))
    np.testing.assert_allclose(evaluation.values[:, 0], AnalyticOracle(space).evaluate(configs))
    np.testing.assert_allclose(evaluation.values[:, 1], costs.bitops(space, configs))
    np.testing.assert_allclose(evaluation.minimised, evaluation.values * [-1, 1])
    # relative excess over the 3-bit budget: 4 bits is 1/3 over, 8 bits 5/3
    np.testing.assert_allclose(evaluation.violation, [0.0, 1 / 3, 5 / 3])
    np.testing.assert_array_equal(evaluation.feasible, [True, False, False])


def test_initial_population_meets_the_budget_and_is_distinct() -> None:
    problem = problem_under_budget(w_bits=2.2)
    genomes = problem.initial_population(np.random.default_rng(0), 60)
    assert genomes.shape == (60, problem.layout.n_genes)
    assert len({row.tobytes() for row in genomes}) == 60
    batch = problem.decode(genomes)
    assert (costs.average_weight_bits(problem.space, batch) <= 2.2).all()
    # the activation genes are unconstrained: the sample spans their range
    assert len(np.unique(batch.a_bits[:, 1:5])) == 3


def test_initial_population_of_a_tiny_feasible_set_repeats_configs() -> None:
    # only the all-2-bit weights meet 2 bits: 3⁴ activation choices remain
    problem = problem_under_budget(w_bits=2.0)
    genomes = problem.initial_population(np.random.default_rng(1), 100)
    assert 50 <= len({row.tobytes() for row in genomes}) <= 81
    assert (problem.decode(genomes).w_bits[:, 1:5] == 2).all()


def test_check_feasible_states_the_smallest_reachable_value() -> None:
    with pytest.raises(ValueError) as error:
        problem_under_budget(w_bits=1.5).check_feasible()
    assert str(error.value) == (
        "the budget w_bits <= 1.5 cannot be met: the smallest reachable average weight bits is 2.00"
    )


def test_make_problem_from_names() -> None:
    space = enumerable_space()
    oracle = AnalyticOracle(space)
    problem = make_problem(
        space, oracle, objectives=("accuracy", "size", "w_comp"), w_bits=3, target="snpe"
    )
    assert problem.objective_names == ("accuracy", "size_bytes", "w_comp")
    assert [o.direction for o in problem.objectives] == ["max", "min", "max"]
    assert problem.layout.forms == (QuantForm("tensor", False, False),)
    assert problem.layout.n_form_genes == 0
    per_layer = make_problem(space, oracle, target="any", forms_per_layer=True)
    assert per_layer.layout.n_form_genes == space.n_layers
    assert per_layer.constraints == ()
    with pytest.raises(ValueError, match="objectives must be among accuracy, bitops"):
        make_problem(space, oracle, objectives=("energy",))
    with pytest.raises(ValueError, match="the accuracy objective needs an oracle"):
        make_problem(space, None)
    with pytest.raises(ValueError, match=r"smallest reachable average activation bits is 2\.00"):
        make_problem(space, oracle, a_bits=1.9)
    with pytest.raises(ValueError, match="target must be one of tensorrt, snpe, tflite, any"):
        make_problem(space, oracle, target="coreml")


def test_targets() -> None:
    space = enumerable_space()
    assert set(TARGETS) == {"tensorrt", "snpe", "tflite", "any"}
    assert get_target("tensorrt").forms_in(space) == (QuantForm("channel", True, True),)
    assert get_target("tflite").forms_in(space) == (QuantForm("channel", True, False),)
    assert get_target("any").forms_in(space) == space.forms
    tensor_only = enumerable_space().__class__(
        space.layers, granularities=("tensor",), w_symmetries=(False,), a_symmetries=(False,)
    )
    with pytest.raises(ValueError, match="target 'tensorrt' needs channel-sym-sym, but the"):
        get_target("tensorrt").forms_in(tensor_only)


def test_reference_genomes_are_the_uniform_configs() -> None:
    problem = problem_under_budget()
    batch = problem.decode(problem.reference_genomes())
    space = problem.space
    assert batch.configs() == [space.uniform(b, b, QuantForm()) for b in (2, 4, 8)]
