"""The joint oqa_mbv3 supernet: set_subnet time, W4/A4 and sandwich training steps vs FP32.

Run: ``python benchmarks/joint_supernet.py [--image-size 64] [--batch 16] [--threads 1]
[--device cpu|cuda]``.
In one run, paired rounds of: an FP32 step of the largest architecture built as a plain static
network, a W4/A4 step of the largest subnet of the joint supernet, and a sandwich step (H
largest at the highest bits, R random, L smallest at the lowest, WDR) — each forward,
backward, gradient clipping and Adam; prints the medians of the per-round ratios to the FP32
step, and the median ``set_subnet`` time over random joint configs (architecture and bits).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.networks.models import create_model
from supernet.runtime import keep_freed_memory
from supernet.training.config import TrainConfig
from supernet.training.sandwich import draw_sandwich, sandwich_step

MODEL = "oqa_mbv3"


def set_subnet_times(supernet: nn.Module, configs: list, repeats: int) -> list[float]:
    """Seconds of each ``set_subnet`` over ``configs``, ``repeats`` times."""
    times = []
    for _ in range(repeats):
        for config in configs:
            start = time.perf_counter()
            supernet.set_subnet(config)
            times.append(time.perf_counter() - start)
    return times


def measure(
    image_size: int, batch: int, rounds: int, device: str
) -> dict[str, float | list[float]]:
    """Medians of the three steps, of their per-round ratios, and of set_subnet."""
    torch.manual_seed(0)
    supernet = build_supernet(MODEL, num_classes=1000, image_size=image_size)
    space = supernet.space
    configs = [space.largest(), space.smallest(), *space.sample(np.random.default_rng(0), 200)]
    switch = set_subnet_times(supernet, configs, 3)
    supernet = supernet.to(device)
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    init_quantizers(supernet, images[:8])
    supernet.train()
    fp_model: nn.Module = create_model(MODEL, num_classes=1000, image_size=image_size)
    static = fp_model.static_copy(space.largest().arch_dict).to(device).train()  # type: ignore[operator]
    static_parameters = list(static.parameters())
    static_optimizer = torch.optim.Adam(static_parameters, lr=1e-4)
    parameters = list(supernet.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-4)
    config = TrainConfig(model=MODEL)
    weights = [layer.weight for layer in supernet.elastic_layers().values()]
    w4a4 = space.uniform(4, 4, QuantForm.parse("channel-sym-sym"))
    rng = np.random.default_rng(1)

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(step: Callable[[], None]) -> float:
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        return time.perf_counter() - start

    def fp_step() -> None:
        static_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(static(images), labels).backward()
        torch.nn.utils.clip_grad_value_(static_parameters, 1.0)
        static_optimizer.step()

    def quantized_step() -> None:
        supernet.set_subnet(w4a4)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(supernet(images), labels).backward()
        torch.nn.utils.clip_grad_value_(parameters, 1.0)
        optimizer.step()

    def sandwich() -> None:
        subnets = draw_sandwich(space, rng, space.w_bits)
        optimizer.zero_grad(set_to_none=True)
        sandwich_step(supernet, images, labels, subnets, config, weights)
        torch.nn.utils.clip_grad_value_(parameters, 1.0)
        optimizer.step()

    for _ in range(2):
        timed(fp_step), timed(quantized_step), timed(sandwich)
    fp, quantized, full, quantized_ratio, sandwich_ratio = [], [], [], [], []
    for _ in range(rounds):
        fp.append(timed(fp_step))
        quantized.append(timed(quantized_step))
        full.append(timed(sandwich))
        quantized_ratio.append(quantized[-1] / fp[-1])
        sandwich_ratio.append(full[-1] / fp[-1])
    return {
        "set_subnet": statistics.median(switch),
        "set_subnet_p99": float(np.percentile(switch, 99)),
        "set_subnet_first": statistics.median(switch[: len(configs)]),
        "fp": statistics.median(fp),
        "w4a4": statistics.median(quantized),
        "sandwich": statistics.median(full),
        "w4a4_ratio": statistics.median(quantized_ratio),
        "sandwich_ratio": statistics.median(sandwich_ratio),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--row", action="store_true", help="one row of benchmarks/gpu_suite.sh's table"
    )
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = measure(args.image_size, args.batch, args.rounds, args.device)
    size = f"{args.image_size}×{args.image_size}"
    if args.row:
        print(
            f"| training steps, {MODEL} {size}, batch {args.batch} | FP32 "
            f"{1 / result['fp']:.2f} / W4A4 {1 / result['w4a4']:.2f} / sandwich "
            f"{1 / result['sandwich']:.2f} steps/s | W4A4 {result['w4a4_ratio']:.2f}×, sandwich "
            f"{result['sandwich_ratio']:.2f}× the static FP32 step; {args.rounds} paired rounds |",
            flush=True,
        )
        return
    print(
        f"{MODEL} on {args.device}, batch {args.batch}, {size}: set_subnet median "
        f"{result['set_subnet'] * 1e6:.0f} µs (99th percentile "
        f"{result['set_subnet_p99'] * 1e6:.0f} µs; first switch to each config "
        f"{result['set_subnet_first'] * 1e6:.0f} µs; 202 joint configs × 3); "
        "W4A4 step of the largest subnet / static FP32 step = "
        f"{result['w4a4_ratio']:.2f}x; sandwich (H+R+L+WDR) / static FP32 step = "
        f"{result['sandwich_ratio']:.2f}x (medians of {args.rounds} paired rounds: FP32 "
        f"{result['fp'] * 1e3:.0f} ms, W4A4 {result['w4a4'] * 1e3:.0f} ms, sandwich "
        f"{result['sandwich'] * 1e3:.0f} ms)"
    )


if __name__ == "__main__":
    main()
