"""Quantizer initialisation of resnet20 from 32 images, each variant in a fresh process.

Run: ``python benchmarks/quant_init_speed.py`` (``--rounds N`` fresh processes per variant).
Every process first calls ``supernet.runtime.keep_freed_memory()`` (as ``train_supernet`` does)
unless the variant leaves glibc's malloc at its defaults, then times its first
``init_quantizers`` call (the one training makes; wall clock and this process's CPU time) and
the median of three more. The processes run with torch's OpenMP threads as the ``eqsearch``
command line sets them (``OMP_WAIT_POLICY=PASSIVE`` unless the environment names a policy;
``OMP_WAIT_POLICY=ACTIVE`` measures libgomp's spinning instead). Variants:
the library as it is (the clipping search on one thread), and the same with the search on all
of torch's threads, each with and without the malloc setting. Prints the median over the
processes of each variant and the machine's load average, which decides the all-threads
figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

from eqsearch.app.cli import prefer_passive_openmp

VARIANTS = {
    "library (search on one thread), malloc kept": ("one", True),
    "library (search on one thread), malloc default": ("one", False),
    "search on all threads, malloc kept": ("all", True),
    "search on all threads, malloc default": ("all", False),
}


def measure(threads: str, keep_memory: bool) -> dict[str, float]:
    """Seconds of the first and the median later ``init_quantizers`` call in this process."""
    import torch

    import supernet.networks.quant_init as quant_init
    from supernet import build_supernet, init_quantizers
    from supernet.runtime import keep_freed_memory

    if keep_memory:
        keep_freed_memory()
    if threads == "all":
        quant_init.one_thread = contextlib.nullcontext  # type: ignore[assignment]
    net = build_supernet("resnet20", num_classes=10)
    images = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    timings, cpu = [], []
    for _ in range(4):
        start, start_cpu = time.perf_counter(), time.process_time()
        init_quantizers(net, images)
        timings.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"first": timings[0], "later": statistics.median(timings[1:]), "cpu": cpu[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per variant")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    prefer_passive_openmp()  # before torch is imported here and in the children
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == "1")))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    loads = []
    for _ in range(args.rounds):
        for name, (threads, keep_memory) in VARIANTS.items():  # interleaved: same load
            loads.append(os.getloadavg()[0])
            output = subprocess.run(
                [sys.executable, __file__, "--child", threads, str(int(keep_memory))],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    for name, runs in results.items():
        first = statistics.median(run["first"] for run in runs)
        later = statistics.median(run["later"] for run in runs)
        cpu = statistics.median(run["cpu"] for run in runs)
        spread = ", ".join(f"{run['first']:.2f}" for run in runs)
        print(
            f"init_quantizers resnet20, 32 images [{name}]: first call {first:.2f} s "
            f"(per process: {spread}; CPU time {cpu:.2f} s), later calls {later:.2f} s"
        )
    print(f"load average during the runs: {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
