"""One memory guard: every array sized from input is refused before it is allocated."""

from __future__ import annotations

import time

import numpy as np
import pytest

import eqsearch.resources
from eqsearch.errors import InputError
from eqsearch.problem import make_problem
from eqsearch.resources import configs_memory_bytes
from eqsearch.strategies import random_configs
from eqsearch.strategies.ilp import budget_levels
from predictors.samples.drawing import draw_configs
from tests.eqsearch.joint_fixtures import joint_space
from tests.eqsearch.search_fixtures import AnalyticOracle, enumerable_space


@pytest.fixture(autouse=True)
def eight_gigabytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine has 8 GiB available, whatever this one has."""
    monkeypatch.setattr(eqsearch.resources, "available_memory_bytes", lambda: 8 << 30)


def _refused_at_once(call: object, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]
    assert time.perf_counter() - started < 2.0  # refused before, not after, the work


def test_the_estimate_grows_with_configs_layers_and_genes() -> None:
    assert configs_memory_bytes(0, 10) == 0
    assert configs_memory_bytes(2, 10) == 2 * configs_memory_bytes(1, 10)
    assert configs_memory_bytes(1, 20) > configs_memory_bytes(1, 10)
    assert configs_memory_bytes(1, 10, 5) > configs_memory_bytes(1, 10)


def test_a_joint_space_draw_is_refused_before_it_draws() -> None:
    _refused_at_once(
        lambda: draw_configs(joint_space(), 10_000_000_000_000), r"10000000000000 subnets needs"
    )
    assert len(draw_configs(joint_space(), 50)) == 50  # a sane draw still runs


def test_random_configs_and_budget_levels_are_refused_before_they_allocate() -> None:
    space = enumerable_space()
    problem = make_problem(space, AnalyticOracle(space), target="tensorrt")
    _refused_at_once(lambda: random_configs(problem, 10**11), "random configs needs about")
    _refused_at_once(lambda: budget_levels(1.0, 8.0, 10**12), "budget levels needs about")
    np.testing.assert_allclose(budget_levels(1.0, 8.0, 4), [1.0, 2.0, 4.0, 8.0])


def test_an_mlp_too_wide_for_memory_is_refused_before_torch_allocates() -> None:
    from predictors.mlp import MLPPredictor

    space = enumerable_space()
    batch = space.sample(np.random.default_rng(0), 30)
    accuracies = AnalyticOracle(space).evaluate(batch)
    wide = MLPPredictor(space, width=2**30, epochs=1)
    _refused_at_once(lambda: wide.fit(list(batch), accuracies), "width 1073741824 needs about")


def test_the_message_says_what_and_how_much() -> None:
    with pytest.raises(InputError) as caught:
        eqsearch.resources.check_memory(float(1 << 40), "--count 5")
    assert str(caught.value) == (
        "--count 5 needs about 1024.0 GiB of memory; this machine has 8.0 GiB available "
        "(at most 50% of it is used)"
    )
