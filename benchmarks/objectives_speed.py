"""NSGA-II time with 2, 3 and 4 objectives: population 100 x 500 generations on the lenet5 space.

Objective sets: accuracy + BitOPs; + packed size; + A-Comp. Accuracy comes from the default
MLP predictor (2 hidden layers of 128) fit on 1000 drawn lenet5 configs with a synthetic
accuracy formula (the timing does not depend on the targets); average weight bits <= 3, the
form searched too (``make_problem`` as ``eqsearch nsga --w-bits 3`` builds it). Prints, per
engine, the median wall time over ``--repeats`` runs and its ratio to the 2-objective run,
all measured in one process. Usage::

    python benchmarks/objectives_speed.py [--repeats 3] [--generations 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from eqsearch import costs
from eqsearch.engines import nsga2
from eqsearch.problem import make_problem
from eqsearch.space import ElasticSpace
from predictors import PredictorOracle, build_predictor
from predictors.samples.drawing import draw_configs

SPACE_FILE = Path(__file__).with_name("lenet5_space.json")
OBJECTIVE_SETS = (
    ("accuracy", "bitops"),
    ("accuracy", "bitops", "size"),
    ("accuracy", "bitops", "size", "a_comp"),
)


def load_space(rebuild: bool) -> ElasticSpace:
    """The lenet5 space (28x28, 10 classes), measured once by the supernet and cached."""
    if rebuild or not SPACE_FILE.exists():
        from supernet.networks.build import build_supernet

        space = build_supernet("lenet5", num_classes=10, in_channels=1).space
        SPACE_FILE.write_text(json.dumps(space.to_dict(), indent=1) + "\n")
    return ElasticSpace.from_dict(json.loads(SPACE_FILE.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--rebuild-space", action="store_true", help="re-measure lenet5")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    space = load_space(args.rebuild_space)
    batch = draw_configs(space, 1000, seed=0)
    accuracy = 97.0 + 0.1 * costs.average_weight_bits(space, batch)
    accuracy -= 0.2 * (~batch.per_channel).mean(axis=1)
    oracle = PredictorOracle(build_predictor("mlp", space).fit(batch, accuracy))
    print(f"lenet5 space: {space.describe()}")
    print(
        f"population {args.population} x {args.generations} generations, W <= 3 bits, "
        f"MLP predictor; median of {args.repeats} runs"
    )
    for engine in ("pymoo", "deap"):
        reference = None
        for names in OBJECTIVE_SETS:
            problem = make_problem(space, oracle, objectives=names, w_bits=3.0)
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                front = nsga2(
                    problem,
                    engine=engine,
                    population=args.population,
                    generations=args.generations,
                    seed=0,
                )
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            reference = reference or seconds
            print(
                f"{engine:5}  {len(names)} objectives ({','.join(names)}): {seconds:6.2f} s  "
                f"{seconds / reference:5.2f}x the 2-objective run  (front {len(front)} configs)",
                flush=True,
            )


if __name__ == "__main__":
    main()
