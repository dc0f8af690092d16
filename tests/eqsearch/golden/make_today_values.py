"""Record what today's fixed-architecture spaces produce, to pin them in the joint-space tests.

Run once on main at commit 57a8aa9 (before the joint space existed), from the repository root:
``PYTHONPATH=$PWD python tests/eqsearch/golden/make_today_values.py``; it writes
``today_values.json`` beside itself. ``tests/eqsearch/test_today_unchanged.py`` checks the
current code against that file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from eqsearch import costs, nsga2
from eqsearch.problem import (
    SearchProblem,
    accuracy_objective,
    bitops_objective,
    size_objective,
    weight_bits_budget,
)
from eqsearch.space import ConfigBatch, ElasticSpace
from predictors.encoding import encode_configs
from predictors.samples.drawing import draw_configs
from tests.conftest import make_space
from tests.eqsearch.search_fixtures import AnalyticOracle, enumerable_space

HERE = Path(__file__).parent
RESNET18 = Path(__file__).parents[3] / "benchmarks" / "resnet18_space.json"


def spaces() -> dict[str, ElasticSpace]:
    return {
        "lenet_like": make_space(),
        "enumerable": enumerable_space(),
        "resnet18": ElasticSpace.from_dict(json.loads(RESNET18.read_text())),
    }


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def text_digest(lines: list[str]) -> dict[str, object]:
    """The first two lines in full and a sha256 of all of them joined by newlines."""
    joined = "\n".join(lines)
    sha = hashlib.sha256(joined.encode()).hexdigest()
    return {"first": lines[:2], "count": len(lines), "sha256": sha}


def hex_keys(batch: ConfigBatch) -> list[str]:
    keys = batch.keys()
    return [key.hex() for key in keys]


def space_values(space: ElasticSpace) -> dict[str, object]:
    batch = space.sample(1, 48, forms="per_layer")
    layouts = {}
    for name, forms, per_layer in (
        ("all_global", None, False),
        ("all_per_layer", None, True),
        ("first_form", space.forms[0], False),
    ):
        layout = space.genome_layout(forms, per_layer=per_layer)
        genomes = layout.random(3, 16)
        decoded = layout.decode(genomes)
        layouts[name] = {
            "lower": layout.lower.tolist(),
            "upper": layout.upper.tolist(),
            "random_genomes": genomes.tolist(),
            "decoded_keys": hex_keys(decoded),
            "decoded_json": text_digest([config.to_json() for config in decoded.configs()]),
        }
    per_layer = space.genome_layout(None, per_layer=True)
    table = costs.cost_table(space, batch)
    return {
        "to_json": space.to_json(),
        "fingerprint": space.fingerprint,
        "describe": space.describe(),
        "sample_json": text_digest([config.to_json() for config in batch.configs()]),
        "sample_keys": hex_keys(batch),
        "encoded_per_layer": per_layer.encode(batch).tolist(),
        "layouts": layouts,
        "costs": {name: [float(v) for v in values] for name, values in table.items()},
        "bits_range": {k: list(v) for k, v in costs.bits_range(space).items()},
        "features_sha256": digest(encode_configs(space, batch)),
        "features_shape": list(encode_configs(space, batch).shape),
        "draw_spread_json": text_digest(
            [c.to_json() for c in draw_configs(space, 40, seed=3, strategy="spread").configs()]
        ),
        "draw_uniform_json": text_digest(
            [
                c.to_json()
                for c in draw_configs(space, 40, seed=3, strategy="uniform", forms="per_layer")
            ]
        ),
    }


def problems() -> dict[str, SearchProblem]:
    space = enumerable_space()
    accuracy = accuracy_objective(AnalyticOracle(space))
    return {
        "two_objectives": SearchProblem(
            space, [accuracy, bitops_objective()], [weight_bits_budget(3.5)], forms=None
        ),
        "three_objectives": SearchProblem(
            space,
            [accuracy, bitops_objective(), size_objective()],
            [weight_bits_budget(3.5)],
            forms=None,
            per_layer_forms=True,
        ),
    }


def search_values() -> dict[str, object]:
    result: dict[str, object] = {}
    for name, problem in problems().items():
        result[f"{name}/initial_population"] = problem.initial_population(
            np.random.default_rng(11), 30
        ).tolist()
        result[f"{name}/reference_genomes"] = problem.reference_genomes().tolist()
        for engine in ("pymoo", "deap"):
            for seed in (0, 5):
                front = nsga2(problem, engine=engine, population=30, generations=40, seed=seed)
                result[f"{name}/{engine}/{seed}"] = {
                    "genomes": problem.layout.encode(front.batch).tolist(),
                    "values": front.values.tolist(),
                    "evaluated": len(front.evaluated) if front.evaluated is not None else 0,
                    "evaluated_sha256": digest(front.evaluated),
                    "reference": {k: v.tolist() for k, v in front.reference.items()},
                    "to_dict_sha256": hashlib.sha256(
                        json.dumps(front.to_dict(), sort_keys=True).encode()
                    ).hexdigest(),
                }
    return result


def main() -> None:
    values = {
        "spaces": {name: space_values(space) for name, space in spaces().items()},
        "search": search_values(),
    }
    (HERE / "today_values.json").write_text(json.dumps(values, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
