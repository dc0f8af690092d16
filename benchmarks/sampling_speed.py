"""Subnets measured per second on every core: worker processes vs threads vs torch's threads.

Run: ``python benchmarks/sampling_speed.py [--subnets 16] [--repeats 3]``. The demo's
measurement (LeNet-5, 1000 calibration + 4000 scoring images), each way measuring the same
fresh subnets, one way after another per repeat; prints medians and the ratios to one process
with torch's default threads (what ``eqsearch sample`` did before it had workers):

- one process, torch's default threads (intra-op parallelism over the cores);
- one process, one torch thread (one core);
- Python threads, one per core, each with its own copy of the supernet, one torch thread;
- forked worker processes, one per core, one torch thread each (``SupernetOracle(workers=)``,
  ``eqsearch sample``'s default).

Every way keeps its oracles from one repeat to the next, and each starts with the first-layer
outputs of every form stored (``supernet.evaluation.inference.LayerOutputCache``), as a sampling run
of hundreds of subnets has them after its first few.
"""

from __future__ import annotations

import argparse
import copy
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqsearch.space import SubnetConfig
from supernet import build_supernet
from supernet.evaluation.oracle import SupernetOracle
from supernet.parallel import usable_cores
from supernet.runtime import keep_freed_memory


def _with_threads(count: int, run: Callable[[], None]) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        run()
    finally:
        torch.set_num_threads(previous)


def _warm(oracle: SupernetOracle) -> None:
    """Fill the oracle's first-layer outputs as a long sampling run has them: one 8-bit
    uniform subnet of every form, measured in this process (forked workers inherit them)."""
    workers, oracle.workers = oracle.workers, 1
    space = oracle.space
    oracle.evaluate([space.uniform(max(space.w_bits), max(space.a_bits), f) for f in space.forms])
    oracle.workers = workers


def _threaded(oracles: Sequence[SupernetOracle], configs: list[SubnetConfig]) -> None:
    pending: queue.Queue[SubnetConfig] = queue.Queue()
    for config in configs:
        pending.put(config)

    def work(oracle: SupernetOracle) -> None:
        while True:
            try:
                config = pending.get_nowait()
            except queue.Empty:
                return
            oracle.evaluate([config])

    threads = [threading.Thread(target=work, args=(oracle,)) for oracle in oracles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subnets", type=int, default=16, help="subnets per way and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    cores = usable_cores()
    default_threads = torch.get_num_threads()
    torch.manual_seed(0)
    supernet = build_supernet("lenet5", num_classes=10, in_channels=1)
    generator = torch.Generator().manual_seed(0)
    calibration = torch.rand(1000, 1, 28, 28, generator=generator)
    images = torch.rand(4000, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (4000,), generator=generator)
    tensors = (images, labels, calibration)
    copies = [supernet] + [copy.deepcopy(supernet) for _ in range(cores - 1)]
    pool = list(
        supernet.space.sample(np.random.default_rng(0), 4 * args.subnets * args.repeats + 2)
    )
    single, one_thread = SupernetOracle(supernet, *tensors), SupernetOracle(supernet, *tensors)
    threaded = [SupernetOracle(copy_, *tensors) for copy_ in copies]
    forked = SupernetOracle(supernet, *tensors, workers=cores)
    for oracle in (single, one_thread, *threaded, forked):
        _warm(oracle)
    ways: dict[str, Callable[[list[SubnetConfig]], None]] = {
        f"1 process, {default_threads} torch threads": lambda configs: _with_threads(
            default_threads, lambda: single.evaluate(configs)
        ),
        "1 process, 1 torch thread": lambda configs: _with_threads(
            1, lambda: one_thread.evaluate(configs)
        ),
        f"{cores} threads, 1 torch thread each": lambda configs: _with_threads(
            1, lambda: _threaded(threaded, configs)
        ),
        f"{cores} worker processes, 1 torch thread each": lambda configs: forked.evaluate(configs),
    }
    ways[next(iter(ways))](pool[:2])  # compile and warm up
    rates: dict[str, list[float]] = {name: [] for name in ways}
    drawn = iter(pool[2:])
    for _ in range(args.repeats):
        for name, run in ways.items():
            configs = [next(drawn) for _ in range(args.subnets)]
            start = time.perf_counter()
            run(configs)
            rates[name].append(args.subnets / (time.perf_counter() - start))
    reference = statistics.median(rates[next(iter(ways))])
    print(
        f"LeNet-5, 1000 + 4000 images per subnet, {args.subnets} subnets per way, medians of "
        f"{args.repeats} repeats in one run, {cores} usable cores"
    )
    print("| way | subnets/s | / one process, default threads |")
    print("|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.2f} | {rate / reference:.2f}× |")


if __name__ == "__main__":
    main()
