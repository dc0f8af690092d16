"""The supernet oracle per subnet vs one FP32 forward pass over the same images.

Run: ``python benchmarks/oracle_speed.py [--cases lenet5,resnet20] [--threads N]
[--device cpu|cuda]``. A subnet's measurement is BN re-calibration on the calibration images
plus scoring on the held-out images; the reference is one full-precision forward of the same
network over both sets (eval mode, ``torch.no_grad``, contiguous NCHW, the oracle's batch
size), as a user's plain evaluation loop runs it. Each round times the reference, today's plain
path (``subnet_accuracy(fast=False)``) and ``SupernetOracle`` on a fresh subnet, one after
another; the script prints the paired median ratios measured in one run and whether both
paths gave every subnet the same score. ``--case resnet18`` (224×224) is the GPU figure.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eqsearch.space import SubnetConfig
from supernet import build_supernet
from supernet.evaluation.inference import frozen_weights
from supernet.evaluation.oracle import SupernetOracle, subnet_accuracy, top1_accuracy
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet
from supernet.quantizers import lsq_kernels
from supernet.runtime import keep_freed_memory

BATCH_SIZE = 500


@dataclass(frozen=True)
class Case:
    """A network and the numbers of calibration and scoring images of one measurement."""

    model: str
    in_channels: int
    image_size: int
    calibration: int
    images: int


CASES = {
    "lenet5": Case("lenet5", 1, 28, 2000, 4000),
    "resnet20": Case("resnet20", 3, 32, 1000, 2000),
    "resnet18": Case("resnet18", 3, 224, 1000, 2000),
}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(case: Case, rounds: int, device: str) -> dict[str, float]:
    """Median seconds of the FP32 reference, the plain and the fast path, and their paired
    ratios; ``mismatches`` counts subnets the two paths scored differently."""
    torch.manual_seed(0)
    net = build_supernet(
        case.model, num_classes=10, in_channels=case.in_channels, image_size=case.image_size
    ).to(device)
    generator = torch.Generator().manual_seed(0)
    shape = (case.in_channels, case.image_size, case.image_size)
    calibration = torch.rand(case.calibration, *shape, generator=generator).to(device)
    images = torch.rand(case.images, *shape, generator=generator).to(device)
    labels = torch.randint(0, 10, (case.images,), generator=generator).to(device)
    both = torch.cat([calibration, images])
    configs = list(net.space.sample(np.random.default_rng(0), 2 * rounds + 2))
    oracle = SupernetOracle(net, images, labels, calibration, batch_size=BATCH_SIZE)

    def reference() -> float:
        net.set_subnet(None)
        net.eval()
        _synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            for chunk in both.split(BATCH_SIZE):
                net(chunk)
        _synchronize(device)
        return time.perf_counter() - start

    def plain(config: object) -> tuple[float, float]:
        start = time.perf_counter()
        score = subnet_accuracy(net, config, images, labels, calibration, fast=False)  # type: ignore[arg-type]
        return time.perf_counter() - start, score

    def fast(config: object) -> tuple[float, float]:
        start = time.perf_counter()
        score = float(oracle.evaluate([config])[0])  # type: ignore[list-item]
        return time.perf_counter() - start, score

    reference()
    plain(configs[0])
    fast(configs[1])  # compiles the kernels, first-touch allocations
    times: dict[str, list[float]] = {"fp32": [], "plain": [], "fast": []}
    ratios: dict[str, list[float]] = {"plain": [], "fast": []}
    mismatches = 0
    for round_index in range(rounds):
        config = configs[2 + round_index]
        fp32 = reference()
        plain_seconds, plain_score = plain(config)
        fast_seconds, fast_score = fast(config)
        mismatches += plain_score != fast_score
        times["fp32"].append(fp32)
        times["plain"].append(plain_seconds)
        times["fast"].append(fast_seconds)
        ratios["plain"].append(plain_seconds / fp32)
        ratios["fast"].append(fast_seconds / fp32)
    result = {f"{name}_seconds": statistics.median(values) for name, values in times.items()}
    result.update({f"{name}_ratio": statistics.median(values) for name, values in ratios.items()})
    result["mismatches"] = mismatches
    return result


def _partial_fast_path(
    net: Supernet,
    config: SubnetConfig,
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    kernel: bool,
) -> float:
    """``subnet_accuracy`` with only some shortcuts: inference mode and each weight quantized
    once, the one-pass input kernel only with ``kernel``, torch's max pooling."""
    images, labels, calibration = tensors
    servable = lsq_kernels.servable
    if not kernel:
        lsq_kernels.servable = lambda x: False  # type: ignore[assignment]
    try:
        with (
            preserved_bn_state(net),
            net.using(config),
            torch.inference_mode(),
            frozen_weights(net),
        ):
            calibrate_bn(net, calibration, batch_size=BATCH_SIZE)
            net.eval()
            score = top1_accuracy(net, images, labels, batch_size=BATCH_SIZE)
    finally:
        lsq_kernels.servable = servable
    net.train()
    return score


def measure_steps(case: Case, rounds: int) -> dict[str, float]:
    """Paired median ratios to the FP32 reference of the plain path, each shortcut added in
    turn, and ``SupernetOracle`` (the last step: + strided max pooling)."""
    torch.manual_seed(0)
    net = build_supernet(
        case.model, num_classes=10, in_channels=case.in_channels, image_size=case.image_size
    )
    generator = torch.Generator().manual_seed(0)
    shape = (case.in_channels, case.image_size, case.image_size)
    calibration = torch.rand(case.calibration, *shape, generator=generator)
    images = torch.rand(case.images, *shape, generator=generator)
    labels = torch.randint(0, 10, (case.images,), generator=generator)
    tensors = (images, labels, calibration)
    both = torch.cat([calibration, images])
    steps: dict[str, Callable[[SubnetConfig], float]] = {
        "plain path": lambda c: subnet_accuracy(net, c, *tensors, fast=False),
        "+ inference mode, each weight quantized once": lambda c: _partial_fast_path(
            net, c, tensors, kernel=False
        ),
        "+ one-pass input quantization kernel": lambda c: _partial_fast_path(
            net, c, tensors, kernel=True
        ),
        "+ strided max pooling (= SupernetOracle)": lambda c: subnet_accuracy(net, c, *tensors),
    }

    def reference() -> float:
        net.set_subnet(None)
        net.eval()
        start = time.perf_counter()
        with torch.no_grad():
            for chunk in both.split(BATCH_SIZE):
                net(chunk)
        return time.perf_counter() - start

    configs = iter(net.space.sample(np.random.default_rng(1), len(steps) * (rounds + 1)))
    reference()
    for step in steps.values():
        step(next(configs))
    ratios: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        fp32 = reference()
        scores = set()
        config = next(configs)
        for name, step in steps.items():
            start = time.perf_counter()
            scores.add(step(config))
            ratios[name].append((time.perf_counter() - start) / fp32)
        assert len(scores) == 1, f"the steps scored {config} differently: {scores}"
    return {name: statistics.median(values) for name, values in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="lenet5,resnet20", help=f"from {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--row", action="store_true", help="only rows of benchmarks/gpu_suite.sh's table"
    )
    parser.add_argument(
        "--steps", action="store_true", help="each shortcut in turn, on the CPU (how it got here)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        keep_freed_memory()
    if args.steps:
        print(
            f"{torch.get_num_threads()} torch threads, paired medians of {args.rounds} rounds "
            "(one fresh subnet each, scored the same by every step), ratios to one FP32 forward"
        )
        for name in args.cases.split(","):
            case = CASES[name]
            print(f"| {case.model}, {case.calibration} + {case.images} images | / FP32 |")
            print("|---|---|")
            for step, ratio in measure_steps(case, args.rounds).items():
                print(f"| {step} | {ratio:.2f}× |", flush=True)
        return
    if not args.row:
        print(
            f"device {args.device}, {torch.get_num_threads()} torch threads, batch "
            f"{BATCH_SIZE}, paired medians of {args.rounds} rounds (one fresh subnet each)"
        )
        print(
            "| case | FP32 forward | plain path / FP32 | SupernetOracle / FP32 | subnets/s | "
            "same scores |"
        )
        print("|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        case = CASES[name]
        result = measure(case, args.rounds, args.device)
        same = args.rounds - int(result["mismatches"])
        if args.row:
            print(
                f"| SupernetOracle, {case.model} {case.image_size}×{case.image_size}, "
                f"{case.calibration} + {case.images} images | "
                f"{1 / result['fast_seconds']:.2f} subnets/s | "
                f"{result['fast_ratio']:.2f}× one FP32 forward "
                f"({result['fp32_seconds'] * 1e3:.0f} ms); plain path "
                f"{result['plain_ratio']:.2f}×; same scores {same}/{args.rounds} |",
                flush=True,
            )
            continue
        print(
            f"| {case.model}, {case.calibration} + {case.images} images "
            f"({case.image_size}×{case.image_size}) | {result['fp32_seconds'] * 1e3:.0f} ms | "
            f"{result['plain_ratio']:.2f}× | **{result['fast_ratio']:.2f}×** | "
            f"{1 / result['fast_seconds']:.2f} | {same}/{args.rounds} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
