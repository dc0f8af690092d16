"""The whole demo as a command, and ``eqsearch nsga`` on its supernet: where the time goes.

Run: ``python benchmarks/pipeline_speed.py [--demo DIR] [--repeats 3]``. Without ``--demo``
it first runs ``eqsearch demo`` into a fresh directory and times it (its stages and the
predictors' held-out figures come from the demo's ``summary.json``); with ``--demo`` it reuses
a finished demo directory. Then, on the demo's supernet, medians of ``--repeats`` runs of:

- ``eqsearch nsga --supernet DIR/run/supernet.pt --w-bits 3`` (and with ``--verify 12``) as
  commands, wall clock;
- the imports such a command needs, in a fresh interpreter;
- the search alone (the predictor the command finds, 100 × 500 pymoo generations) and the
  12 verifications alone, in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = (
    "import torch, xgboost, matplotlib.pyplot, eqsearch.engines.pymoo, predictors, "
    "supernet.files.checkpoint"
)


def _run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _eqsearch(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "eqsearch", *arguments]


def _in_process(checkpoint: Path, repeats: int) -> tuple[float, float]:
    """Median seconds of the search alone and of its 12 verifications alone."""
    from eqsearch.app.measure import verify_front
    from eqsearch.engines import nsga2
    from eqsearch.problem import make_problem
    from predictors import PredictorOracle, find_predictor, load_predictor
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

    predictor_path = find_predictor(checkpoint.parent)
    assert predictor_path is not None, f"no predictor beside {checkpoint}"
    predictor = load_predictor(predictor_path)
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="holdout")
    problem = make_problem(predictor.space, PredictorOracle(predictor), w_bits=3.0)
    searches, verifications = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        front = nsga2(problem, engine="pymoo", population=100, generations=500, seed=0)
        searches.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_front(front, supernet_oracle(supernet, evaluation), 12)
        verifications.append(time.perf_counter() - start)
    return statistics.median(searches), statistics.median(verifications)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", type=Path, help="a finished demo directory to reuse")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # this checkout
    with tempfile.TemporaryDirectory() as scratch:
        demo = args.demo
        if demo is None:
            demo = Path(scratch) / "demo"
            cpu_before = _children_cpu()
            load = os.getloadavg()[0]
            seconds = _run(_eqsearch("demo", "--out", str(demo), "--no-progress"))
            cpu = _children_cpu() - cpu_before
            load = max(load, os.getloadavg()[0])
            summary = json.loads((demo / "summary.json").read_text())
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary["seconds"].items())
            print(
                f"eqsearch demo: {seconds:.1f} s as a command, {cpu:.1f} s of CPU in its "
                f"processes, load average up to {load:.1f} ({stages})"
            )
            for backend, metrics in summary["predictors"].items():
                print(
                    f"  {backend}: held-out Kendall τ {metrics['kendall_tau']:.3f}, "
                    f"Pearson {metrics['pearson']:.3f}"
                )
            for engine, search in summary["searches"].items():
                tau = search["kendall_tau"]
                print(
                    f"  {engine}: front {search['front_size']}, predicted vs measured τ "
                    f"{'-' if tau is None else f'{tau:.2f}'}"
                )
        checkpoint = demo / "run" / "supernet.pt"
        out = Path(scratch) / "nsga"
        nsga = _eqsearch("nsga", "--supernet", str(checkpoint), "--w-bits", "3")
        nsga += ["--out", str(out), "--force", "--no-progress"]
        plain = statistics.median(_run(nsga) for _ in range(args.repeats))
        verified = statistics.median(_run([*nsga, "--verify", "12"]) for _ in range(args.repeats))
        imports = statistics.median(
            _run([sys.executable, "-c", IMPORTS]) for _ in range(args.repeats)
        )
        search, verification = _in_process(checkpoint, args.repeats)
    print(f"eqsearch nsga --w-bits 3 on the demo's supernet, medians of {args.repeats}:")
    print("| part | seconds |")
    print("|---|---|")
    print(f"| the command | {plain:.2f} |")
    print(f"| the command with --verify 12 | {verified:.2f} |")
    print(
        f"| torch, xgboost (with scikit-learn, which the command skips), matplotlib, pymoo, "
        f"... imported | {imports:.2f} |"
    )
    print(f"| the search alone (pymoo, 100 × 500, the saved predictor) | {search:.2f} |")
    print(f"| the 12 verifications alone | {verification:.2f} |")
    print(f"| command − search | {plain - search:.2f} |")
    rest = verified - search - verification
    print(f"| command with --verify − search − verifications | {rest:.2f} |")


if __name__ == "__main__":
    main()
