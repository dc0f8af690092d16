"""Sandwich training step (H + R + L + WDR) vs a full-precision step of the same network.

Run: ``python benchmarks/train_step.py [--model resnet20] [--device cpu|cuda]``. Prints the
paired median ratio measured in one run (and steps/s), as BENCHMARKS.md records.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from supernet import build_supernet, init_quantizers
from supernet.runtime import keep_freed_memory
from supernet.training.config import TrainConfig
from supernet.training.sandwich import draw_sandwich, sandwich_step


def measure(model: str, batch: int, rounds: int, device: str, image_size: int) -> dict[str, float]:
    """Median FP32 step, sandwich step and their paired ratio."""
    torch.manual_seed(0)
    net = build_supernet(model, num_classes=10, image_size=image_size).to(device)
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    init_quantizers(net, images[:32])
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    config = TrainConfig(model=model)
    weights = [layer.weight for layer in net.elastic_layers().values()]
    parameters = list(net.parameters())
    rng = np.random.default_rng(0)

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def fp_step() -> float:
        synchronize()
        start = time.perf_counter()
        net.set_subnet(None)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        torch.nn.utils.clip_grad_value_(parameters, 1.0)
        optimizer.step()
        synchronize()
        return time.perf_counter() - start

    def sandwich() -> float:
        subnets = draw_sandwich(net.space, rng, net.space.w_bits)
        synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        sandwich_step(net, images, labels, subnets, config, weights)
        torch.nn.utils.clip_grad_value_(parameters, 1.0)
        optimizer.step()
        synchronize()
        return time.perf_counter() - start

    for _ in range(3):
        fp_step()
        sandwich()
    fp_times, sandwich_times, ratios = [], [], []
    for _ in range(rounds):
        fp = fp_step()
        full = sandwich()
        fp_times.append(fp)
        sandwich_times.append(full)
        ratios.append(full / fp)
    return {
        "fp": statistics.median(fp_times),
        "sandwich": statistics.median(sandwich_times),
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--row", action="store_true", help="one row of benchmarks/gpu_suite.sh's table"
    )
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()
    result = measure(args.model, args.batch, args.rounds, args.device, args.image_size)
    if args.row:
        print(
            f"| sandwich training step (H+R+L+WDR), {args.model} {args.image_size}×"
            f"{args.image_size}, batch {args.batch} | {1 / result['sandwich']:.2f} steps/s | "
            f"{result['ratio']:.2f}× one FP32 step ({1 / result['fp']:.2f} steps/s); "
            f"{args.rounds} paired rounds |",
            flush=True,
        )
        return
    print(
        f"{args.model} on {args.device}, batch {args.batch}, {args.image_size}×{args.image_size}: "
        f"sandwich (H+R+L+WDR) / FP32 step = {result['ratio']:.2f}x  "
        f"(median FP32 {result['fp'] * 1e3:.1f} ms = {1 / result['fp']:.1f} steps/s, "
        f"sandwich {result['sandwich'] * 1e3:.1f} ms = {1 / result['sandwich']:.1f} steps/s, "
        f"{args.rounds} paired rounds)"
    )


if __name__ == "__main__":
    main()
