"""The joint-search study's parts: restricted spaces, converting oracle, hypervolume, noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.space import QuantForm, SubnetConfig
from studies.front_search import FrontSearch
from studies.fronts import log_hypervolume, non_dominated_rows
from studies.joint_report import FrontOutcome, noise_line
from studies.joint_search import ConvertingOracle, JointStudySettings, arch_only_space
from tests.eqsearch.joint_fixtures import TENSORRT, joint_space


def test_arch_only_space_keeps_the_architecture_and_fixes_bits_and_form() -> None:
    space = joint_space()
    restricted = arch_only_space(space, 4, TENSORRT)
    assert restricted.genes == space.genes and restricted.forms == (TENSORRT,)
    configs = restricted.sample(np.random.default_rng(0), 30)
    assert len({config.arch for config in configs}) > 5
    for config in configs:
        space.validate(config)  # a config of the full joint space
        for layer, choice in zip(space.layers, space.layer_choices(config), strict=True):
            if choice is None:  # a layer this architecture does not run
                continue
            expected = layer.pinned or (4, 4)
            assert (choice.w_bits, choice.a_bits) == expected and choice.form == TENSORRT
        # the costs are the joint space's for the same config
        assert costs.bitops(restricted, config) == costs.bitops(space, config)


def test_converting_oracle_scores_the_converted_configs_as_a_list() -> None:
    space = joint_space()
    seen: list[list[SubnetConfig]] = []

    class Recording:
        def evaluate(self, configs):
            seen.append(configs)
            return np.arange(len(configs), dtype=float)

    largest = space.largest(TENSORRT)
    oracle = ConvertingOracle(Recording(), lambda config: largest)
    batch = space.batch(space.sample(np.random.default_rng(1), 3))
    np.testing.assert_array_equal(oracle.evaluate(batch), [0.0, 1.0, 2.0])
    assert seen == [[largest] * 3]


def test_log_hypervolume_on_hand_computed_points() -> None:
    # points (accuracy, BitOPs): (80, 1e4) and (60, 1e3); reference (50 %, 1e5)
    # area: 30 × 1 decade (1e4..1e5) + 10 × 1 decade (1e3..1e4) = 40
    value = log_hypervolume(np.array([80.0, 60.0]), np.array([1e4, 1e3]), (50.0, 1e5))
    assert value == pytest.approx(40.0)
    dominated = log_hypervolume(np.array([80.0, 60.0, 55.0]), np.array([1e4, 1e3, 1e4]), (50, 1e5))
    assert dominated == pytest.approx(40.0)
    assert log_hypervolume(np.array([]), np.array([]), (50.0, 1e5)) == 0.0


def test_noise_line_states_grain_and_binomial_error() -> None:
    outcome = FrontOutcome("f", "f", np.array([1e3]), np.array([50.0]), np.array([50.0]), [])
    line = noise_line([outcome], 400)
    # sqrt(0.25 / 400) = 2.5 points
    assert "400 held-out" in line and "grain 0.25 points" in line and "2.5-2.5 points" in line


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"JointStudySettings\.budgets must be in \(0, 1\]"):
        JointStudySettings(budgets=(0.0,))
    with pytest.raises(ValueError, match=r"JointStudySettings\.verify must be an integer >= 2"):
        JointStudySettings(search=FrontSearch(population=60, generations=100, verify=1))
    with pytest.raises(ValueError, match=r"JointStudySettings\.refine must be an integer >= 0"):
        JointStudySettings(refine=-1)
    assert math.isclose(JointStudySettings().budgets[-1], 0.4)
    QuantForm.parse(JointStudySettings().arch_form)


def test_non_dominated_rows_keep_the_measured_front_in_bitops_order() -> None:
    accuracy = np.array([70.0, 80.0, 75.0, 80.0, 60.0])
    bitops = np.array([2e3, 3e3, 4e3, 5e3, 1e3])
    np.testing.assert_array_equal(non_dominated_rows(accuracy, bitops), [4, 0, 1])
