"""Spaces without architecture genes behave exactly as before the joint space existed.

The expected values were computed by the code of main at commit 57a8aa9, before the joint
space was added (``golden/make_today_values.py`` wrote ``golden/today_values.json``): space
JSON and fingerprints, genomes, decoded configs, costs, encodings, sample draws and the fronts
of both engines for fixed seeds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.eqsearch.golden import make_today_values as today

EXPECTED: dict[str, Any] = json.loads(
    (Path(__file__).parent / "golden" / "today_values.json").read_text()
)
SPACE_NAMES = sorted(EXPECTED["spaces"])


@pytest.fixture(scope="module")
def space_values() -> dict[str, dict[str, Any]]:
    return {name: today.space_values(space) for name, space in today.spaces().items()}


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_space_json_fingerprint_genomes_costs_and_draws_unchanged(
    name: str, space_values: dict[str, dict[str, Any]]
) -> None:
    expected = EXPECTED["spaces"][name]
    actual = space_values[name]
    assert actual["to_json"] == expected["to_json"]
    assert actual["fingerprint"] == expected["fingerprint"]
    assert actual["describe"] == expected["describe"]
    for key in ("sample_json", "sample_keys", "encoded_per_layer", "layouts", "bits_range"):
        assert actual[key] == expected[key], key
    # the cost models' values are bit-identical
    assert actual["costs"] == expected["costs"]
    assert actual["features_shape"] == expected["features_shape"]
    assert actual["features_sha256"] == expected["features_sha256"]
    assert actual["draw_spread_json"] == expected["draw_spread_json"]
    assert actual["draw_uniform_json"] == expected["draw_uniform_json"]


@pytest.mark.parametrize("problem_name", ["two_objectives", "three_objectives"])
def test_initial_population_and_reference_genomes_unchanged(problem_name: str) -> None:
    problem = today.problems()[problem_name]
    population = problem.initial_population(np.random.default_rng(11), 30)
    assert population.tolist() == EXPECTED["search"][f"{problem_name}/initial_population"]
    assert (
        problem.reference_genomes().tolist()
        == EXPECTED["search"][f"{problem_name}/reference_genomes"]
    )


@pytest.mark.parametrize("problem_name", ["two_objectives", "three_objectives"])
@pytest.mark.parametrize("engine", ["pymoo", "deap"])
@pytest.mark.parametrize("seed", [0, 5])
def test_fronts_of_both_engines_unchanged(problem_name: str, engine: str, seed: int) -> None:
    from eqsearch import nsga2

    problem = today.problems()[problem_name]
    expected = EXPECTED["search"][f"{problem_name}/{engine}/{seed}"]
    front = nsga2(problem, engine=engine, population=30, generations=40, seed=seed)
    assert problem.layout.encode(front.batch).tolist() == expected["genomes"]
    assert front.values.tolist() == expected["values"]
    assert front.evaluated is not None
    assert len(front.evaluated) == expected["evaluated"]
    assert today.digest(front.evaluated) == expected["evaluated_sha256"]
    assert {k: v.tolist() for k, v in front.reference.items()} == expected["reference"]
    text = json.dumps(front.to_dict(), sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == expected["to_dict_sha256"]
