"""Issue 28's figures: the latency table of oqa_mbv3 at 224×224 on ONNX Runtime (2 threads).

1. ``eqsearch latency build --model oqa_mbv3 --image-size 224`` (its probe included unless one
   is stored for this machine): wall time, and on 50 held-out random subnets the table's
   median absolute error and Spearman's ρ against measured latency, with BitOPs' and MACs' ρ
   from the same measurements.
2. NSGA-II (pymoo, population 100 × 500 generations) on that space with (proxy accuracy,
   latency) against (proxy accuracy, BitOPs): medians of ``--repeats`` interleaved runs.
3. With ``--study DIR``: the speed-up of the latency-driven picks over the BitOPs-driven ones
   at equal accuracy, read from ``eqsearch study latency``'s ``latency.json``.

Prints one line per figure and the machine's load. Usage (a few minutes on a quiet machine)::

    python benchmarks/latency.py --out /tmp/latency-bench [--table T.json] [--study DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def build_table(out: Path, runtime: str, threads: int, holdout: int) -> Path:
    """Run ``eqsearch latency build`` as a command, timed; returns the table's path."""
    table = out / f"latency-oqa_mbv3-224-{runtime}.json"
    command = [
        sys.executable,
        "-m",
        "eqsearch.app.cli",
        "latency",
        "build",
        "--model",
        "oqa_mbv3",
        "--image-size",
        "224",
        "--runtime",
        runtime,
        "--threads",
        str(threads),
        "--holdout",
        str(holdout),
        "--output",
        str(table),
        "--force",
        "--no-progress",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    minutes = (time.perf_counter() - started) / 60
    print(f"latency build, oqa_mbv3 224, {runtime}, {threads} threads: {minutes:.1f} min (≤ 15)")
    return table


def report_table(path: Path) -> None:
    """The table's error and ranks on its held-out subnets."""
    from eqsearch.latency.table import LatencyTable

    table = LatencyTable.load(path)
    v = table.validation
    print(
        f"held-out subnets {v['n']:.0f}: median |error| {100 * v['median_abs_error']:.1f} % "
        f"(≤ 10 %), p90 {100 * v['p90_abs_error']:.1f} %; Spearman ρ table "
        f"{v['spearman']:.3f} (≥ 0.9), BitOPs {v['bitops_spearman']:.3f}, MACs "
        f"{v['macs_spearman']:.3f}; measurement spread {100 * table.spread:.0f} %; "
        f"built in {table.seconds / 60:.1f} min ({table.key.runtime} {table.key.version}, "
        f"{table.key.cpu})"
    )


def search_ratio(path: Path, repeats: int, population: int, generations: int) -> None:
    """NSGA-II with a latency objective against BitOPs, interleaved."""
    import torch

    from eqsearch.engines import nsga2
    from eqsearch.latency.table import LatencyTable
    from eqsearch.problem import Objective, SearchProblem, bitops_objective, latency_objective
    from supernet import build_supernet

    torch.set_num_threads(1)
    table = LatencyTable.load(path)
    space = build_supernet("oqa_mbv3", num_classes=1000, in_channels=3, image_size=224).space
    table.check_space(space)

    def proxy(batch):  # a stand-in for a fitted predictor, as in the README
        noise = np.where(batch.active, 4.0**-batch.w_bits, 0.0).sum(axis=1)
        return 50 + 2 * np.log(batch.params.sum(axis=1)) - 20 * noise

    accuracy = Objective("accuracy", proxy, "max")
    runs: dict[str, list[float]] = {"bitops": [], "latency": []}
    for _ in range(repeats):
        for name, cost in (("bitops", bitops_objective()), ("latency", latency_objective(table))):
            problem = SearchProblem(space, [accuracy, cost])
            started = time.perf_counter()
            nsga2(problem, population=population, generations=generations, seed=0)
            runs[name].append(time.perf_counter() - started)
    bitops, latency = statistics.median(runs["bitops"]), statistics.median(runs["latency"])
    print(
        f"NSGA-II {population} × {generations}, oqa_mbv3 space: latency objective "
        f"{latency:.2f} s / BitOPs {bitops:.2f} s = {latency / bitops:.2f}× (≤ 1.2×; medians "
        f"of {repeats})"
    )


def report_study(directory: Path) -> None:
    """The picks' speed-up at equal accuracy from a latency study."""
    data = json.loads((directory / "latency.json").read_text())
    for front in data["fronts"]:
        if front["name"] == "bitops":
            continue
        for runtime, speedup in front["speedup"].items():
            text = (
                "-" if speedup is None else f"{speedup[0]:.2f}× ({speedup[1]:.2f}-{speedup[2]:.2f})"
            )
            print(f"{front['label']}, measured on {runtime}: at equal accuracy {text} faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="latency-bench", help="where the table goes")
    parser.add_argument("--table", help="an existing table instead of building one")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--study", help="a latency study's output directory")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = (
        Path(args.table)
        if args.table
        else build_table(out, args.runtime, args.threads, args.holdout)
    )
    report_table(path)
    search_ratio(path, args.repeats, args.population, args.generations)
    if args.study:
        report_study(Path(args.study))
    print(
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
