"""``eqsearch sample`` as a command, this checkout against a baseline checkout, same scores.

Run: ``python benchmarks/sample_command.py --supernet eqsearch-demo/run/supernet.pt
[--baseline DIR] [--n 60] [--holdout 4000] [--repeats 2]``. Each repeat runs the command of
this checkout and then of the baseline (a checkout of an older commit, e.g. made with
``git worktree add`` or ``git archive``) into fresh files; prints the medians, their ratio
(both measured under the same load) and whether both measured every subnet the same.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _sample(checkout: Path, supernet: Path, out: Path, n: int, holdout: int) -> float:
    command = [sys.executable, "-m", "eqsearch", "sample", "--supernet", str(supernet)]
    command += ["--n", str(n), "--holdout", str(holdout), "--out", str(out), "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=checkout, env=environment, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _accuracies(path: Path) -> dict[str, str]:
    with path.open() as stream:
        return {row["index"]: row["accuracy"] for row in csv.DictReader(stream)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--supernet", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, help="an older checkout to compare with")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--holdout", type=int, default=4000, help="scoring images (the demo's)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    checkouts = {"this checkout": HERE}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    seconds: dict[str, list[float]] = {name: [] for name in checkouts}
    scores: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, checkout in checkouts.items():
                out = Path(scratch) / f"{name.replace(' ', '-')}-{repeat}.csv"
                seconds[name].append(
                    _sample(checkout, args.supernet.resolve(), out, args.n, args.holdout)
                )
                scores[name] = _accuracies(out)
    print(
        f"eqsearch sample --n {args.n} --holdout {args.holdout} on {args.supernet}, "
        f"medians of {args.repeats} (alternating)"
    )
    print("| checkout | seconds | subnets/s |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {args.n / median:.2f} |")
    if "baseline" in seconds:
        ratio = statistics.median(seconds["baseline"]) / statistics.median(seconds["this checkout"])
        same = sum(scores["baseline"][i] == scores["this checkout"][i] for i in scores["baseline"])
        print(f"baseline / this checkout: {ratio:.2f}×; same accuracy: {same}/{args.n} subnets")


if __name__ == "__main__":
    main()
