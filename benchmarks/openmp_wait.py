"""The demo's training step with libgomp's default spin-waiting vs ``OMP_WAIT_POLICY=PASSIVE``.

Run: ``python benchmarks/openmp_wait.py [--rounds 3] [--steps 10]``. Each round starts one
fresh process per policy (interleaved, so that they share the machine's load) that times
sandwich steps (H + R + L, Adam) of LeNet-5 on 128 MNIST-sized images with torch's default
threads, as ``eqsearch demo`` trains it. Prints the median step per policy, the paired median
ratio, the load average, and whether both policies left the same weights (they divide the
work the same way; only how an idle thread waits differs). ``eqsearch`` commands set
``PASSIVE`` unless the environment names a policy (``eqsearch.app.cli.prefer_passive_openmp``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys

POLICIES = {"libgomp default (spin, then sleep)": None, "OMP_WAIT_POLICY=PASSIVE": "PASSIVE"}


def measure(steps: int) -> dict[str, object]:
    """Median seconds of a sandwich step in this process, and a hash of the weights after."""
    import time

    import numpy as np
    import torch

    from supernet import build_supernet, init_quantizers
    from supernet.training.config import TrainConfig
    from supernet.training.sandwich import draw_sandwich, sandwich_step

    torch.manual_seed(0)
    net = build_supernet("lenet5", num_classes=10, in_channels=1)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(128, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (128,), generator=generator)
    init_quantizers(net, images[:64])
    config = TrainConfig(model="lenet5", dataset="mnist5k")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    timings = []
    for step in range(steps + 2):
        subnets = draw_sandwich(net.space, np.random.default_rng([0, step]), net.space.w_bits)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        sandwich_step(net, images, labels, subnets, config)
        optimizer.step()
        timings.append(time.perf_counter() - start)
    digest = hashlib.sha256()
    for value in net.state_dict().values():
        digest.update(value.detach().contiguous().numpy().tobytes())
    return {"step": statistics.median(timings[2:]), "weights": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per policy")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.steps)))
        return
    results: dict[str, list[dict[str, object]]] = {name: [] for name in POLICIES}
    loads = []
    for _ in range(args.rounds):
        for name, policy in POLICIES.items():
            environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy is not None:
                environment["OMP_WAIT_POLICY"] = policy
            loads.append(os.getloadavg()[0])
            output = subprocess.run(
                [sys.executable, __file__, "--child", "--steps", str(args.steps)],
                check=True,
                capture_output=True,
                text=True,
                env=environment,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    first, second = (results[name] for name in POLICIES)
    ratios = [float(a["step"]) / float(b["step"]) for a, b in zip(first, second, strict=True)]
    print(
        f"LeNet-5 sandwich step, batch 128, torch's default threads, {args.steps} steps per "
        f"process, {args.rounds} processes per policy, load average {min(loads):.1f}-"
        f"{max(loads):.1f}"
    )
    print("| policy | median step | per process |")
    print("|---|---|---|")
    for name, runs in results.items():
        steps = [float(run["step"]) * 1e3 for run in runs]
        spread = ", ".join(f"{value:.0f}" for value in steps)
        print(f"| {name} | {statistics.median(steps):.0f} ms | {spread} ms |")
    same = {run["weights"] for run in first + second}
    print(
        f"default / passive, paired median: {statistics.median(ratios):.2f}×; "
        f"same weights after the steps: {len(same) == 1}"
    )


if __name__ == "__main__":
    main()
