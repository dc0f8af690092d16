"""PredictorOracle on 10,000 configs: median wall time of one batched ``evaluate`` per backend.

Run: ``python benchmarks/predictor_speed.py [--samples run/samples.csv] [--n 10000]``.
Without ``--samples`` the predictors are fit on 1000 configs of the lenet5 space with a
synthetic accuracy formula (the timing does not depend on the targets). Prints medians over
``--repeats`` calls, for a ``ConfigBatch`` (what the search engines pass: arrays decoded from
genomes) and for a list of ``SubnetConfig`` objects (validated one by one first): wall time,
and the CPU time of this process (which is what the wall time is on an idle machine; on a
shared one, wall time also counts waiting for a core). Set ``OMP_NUM_THREADS=1`` on a busy
machine: BLAS threads spinning for a core cost far more than they gain on these sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from eqsearch import costs
from eqsearch.space import ElasticSpace
from predictors import PREDICTORS, PredictorOracle, build_predictor, load_samples
from predictors.samples.drawing import draw_configs
from predictors.samples.sidecars import read_samples_space


def _training_data(samples: str | None) -> tuple[ElasticSpace, object, np.ndarray]:
    if samples:
        space = read_samples_space(samples)
        if space is None:
            raise SystemExit(f"error: no space file beside {samples}")
        configs, accuracy = load_samples(samples, space)
        return space, space.batch(configs), accuracy
    from supernet import build_supernet

    space = build_supernet("lenet5", num_classes=10, in_channels=1).space
    batch = draw_configs(space, 1000, seed=0)
    accuracy = 97.0 + 0.1 * costs.average_weight_bits(space, batch)
    return space, batch, accuracy


def main() -> None:
    """Fit each backend once, then time ``evaluate`` on ``--n`` configs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", help="fit on this samples file instead of synthetic data")
    parser.add_argument("--n", type=int, default=10_000, help="configs per evaluate call")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backends", default=",".join(PREDICTORS))
    args = parser.parse_args()
    space, batch, accuracy = _training_data(args.samples)
    population = space.sample(np.random.default_rng(1), args.n)
    as_list = list(population)
    print(f"{args.n} configs of {space.describe()}")
    print(f"{'backend':10} {'batch wall ms':>14} {'batch CPU ms':>13} {'list wall ms':>13}")
    for name in args.backends.split(","):
        oracle = PredictorOracle(build_predictor(name, space).fit(batch, accuracy))
        timings: dict[str, list[float]] = {"batch": [], "cpu": [], "list": []}
        for _ in range(args.repeats):
            for kind, configs in (("batch", population), ("list", as_list)):
                started, cpu_started = time.perf_counter(), time.process_time()
                values = oracle.evaluate(configs)
                timings[kind].append(1000 * (time.perf_counter() - started))
                if kind == "batch":
                    timings["cpu"].append(1000 * (time.process_time() - cpu_started))
                assert values.shape == (args.n,)
        medians = {kind: statistics.median(values) for kind, values in timings.items()}
        print(f"{name:10} {medians['batch']:14.1f} {medians['cpu']:13.1f} {medians['list']:13.1f}")


if __name__ == "__main__":
    main()
