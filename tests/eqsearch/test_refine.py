"""Predictor-in-the-loop refinement: what it measures, what it refits on, its measured front."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from eqsearch.app.refine import LookupOracle, RefineSettings, refine_search, spread_unmeasured
from eqsearch.oracle import AccuracyOracle
from eqsearch.pareto import non_dominated
from eqsearch.problem import SearchProblem, accuracy_objective, bitops_objective, make_problem
from eqsearch.space import SubnetConfig
from tests.eqsearch.search_fixtures import TENSORRT, AnalyticOracle, enumerable_space

FAST = {"population": 30, "generations": 20, "backend": "ridge"}


class RecordingOracle:
    """The analytic oracle, remembering every config it was asked about."""

    def __init__(self) -> None:
        self.inner = AnalyticOracle(enumerable_space())
        self.asked: list[bytes] = []

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        batch = self.inner.space.batch(configs)
        self.asked.extend(batch.keys())
        return self.inner.evaluate(batch)


def problem_for(oracle: AccuracyOracle) -> SearchProblem:
    return make_problem(enumerable_space(), oracle, w_bits=3.5, target="tensorrt")


def initial_samples(n: int = 60) -> tuple[list[SubnetConfig], np.ndarray]:
    space = enumerable_space()
    batch = space.sample(np.random.default_rng(0), n)
    return list(batch), AnalyticOracle(space).evaluate(batch)


def test_each_round_measures_k_new_configs_and_refits_on_them() -> None:
    oracle = RecordingOracle()
    configs, accuracies = initial_samples()
    settings = RefineSettings(rounds=2, per_round=5, **FAST)  # type: ignore[arg-type]
    result = refine_search(problem_for, oracle, configs, accuracies, settings)
    assert [entry.measured for entry in result.rounds] == [5, 5, 5]
    assert [entry.samples for entry in result.rounds] == [60, 65, 70]
    assert len(oracle.asked) == settings.measurements == 15
    assert len(set(oracle.asked)) == 15  # never the same config twice
    assert result.front.info["measurements"] == 15
    assert result.front.info["strategy"] == "nsga2-refined"


def test_the_final_front_is_the_measured_one() -> None:
    oracle = RecordingOracle()
    configs, accuracies = initial_samples()
    settings = RefineSettings(rounds=1, per_round=6, **FAST)  # type: ignore[arg-type]
    result = refine_search(problem_for, oracle, configs, accuracies, settings)
    front = result.front
    np.testing.assert_allclose(front.column("accuracy"), oracle.inner.evaluate(front.batch))
    assert set(front.batch.keys()) <= set(oracle.asked)
    # non-dominated among everything measured, and within the budget
    assert (problem_for(oracle.inner).violation(front.batch) == 0).all()
    everything = problem_for(oracle.inner).evaluate_batch(result.measured)
    best = non_dominated(everything.minimised)
    assert len(front) == len(np.unique(everything.values[best], axis=0))
    np.testing.assert_allclose(result.accuracies, oracle.inner.evaluate(result.measured))
    # the last predicted front marks the configs measured from it
    assert np.isfinite(result.predicted.measured).sum() == 6


def test_zero_rounds_is_the_one_shot_search_verified() -> None:
    oracle = RecordingOracle()
    configs, accuracies = initial_samples()
    settings = RefineSettings(rounds=0, per_round=9, **FAST)  # type: ignore[arg-type]
    result = refine_search(problem_for, oracle, configs, accuracies, settings)
    assert len(result.rounds) == 1 and len(oracle.asked) == 9
    assert result.front.info["strategy"] == "nsga2-verified"


def test_spread_unmeasured_skips_what_was_measured() -> None:
    from eqsearch.strategies.front import candidate_front

    space = enumerable_space()
    configs = space.sample(np.random.default_rng(1), 200, form=TENSORRT)
    front = candidate_front(problem_for(AnalyticOracle(space)), configs, {})
    assert len(front) >= 4
    keys = front.batch.keys()
    assert spread_unmeasured(front, {}, 100) == list(range(len(front)))
    measured = {keys[0]: 1.0, keys[-1]: 1.0}
    chosen = spread_unmeasured(front, measured, 2)
    assert len(chosen) == 2 and 0 not in chosen and len(front) - 1 not in chosen


def test_settings_and_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="per_round"):
        RefineSettings(per_round=0)
    with pytest.raises(ValueError, match="engine"):
        RefineSettings(engine="cmaes")
    configs, accuracies = initial_samples()
    with pytest.raises(ValueError, match="at least 2 samples"):
        refine_search(problem_for, RecordingOracle(), configs[:1], accuracies[:1], RefineSettings())

    def costs_only(oracle: AccuracyOracle) -> SearchProblem:
        return make_problem(enumerable_space(), None, objectives=("bitops",), w_bits=3.5)

    with pytest.raises(ValueError, match="accuracy among the objectives"):
        refine_search(costs_only, RecordingOracle(), configs, accuracies, RefineSettings())
    with pytest.raises(KeyError):
        LookupOracle(enumerable_space(), {}).evaluate(configs[:1])


def test_refinement_runs_on_a_joint_space_and_keeps_each_configs_architecture() -> None:
    from tests.eqsearch.joint_fixtures import JointOracle, joint_problem

    template = joint_problem()
    space = template.space
    truth = JointOracle(space)

    def joint_for(oracle: AccuracyOracle) -> SearchProblem:
        return SearchProblem(
            space,
            [accuracy_objective(oracle), bitops_objective()],
            forms=template.layout.forms,
        )

    batch = space.sample(np.random.default_rng(0), 40)
    settings = RefineSettings(rounds=1, per_round=4, **FAST)  # type: ignore[arg-type]
    result = refine_search(joint_for, truth, list(batch), truth.evaluate(batch), settings)
    assert len(result.measured) == 8
    assert len({config.arch for config in result.measured.configs()}) > 1
    # the front's accuracies are the measured ones of its configs, architectures included
    np.testing.assert_allclose(result.front.column("accuracy"), truth.evaluate(result.front.batch))
    np.testing.assert_allclose(result.accuracies, truth.evaluate(result.measured))
