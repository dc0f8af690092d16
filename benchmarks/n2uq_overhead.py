"""N2UQ vs LSQ+ supernet training step: the same sandwich steps, paired, in one run.

Run: ``python benchmarks/n2uq_overhead.py [--model resnet20] [--device cpu|cuda]``. Both
supernets serve the one form N2UQ can express (per-channel symmetric weights, asymmetric
activations) and train on the same subnets (one seeded draw per round); the figure is the
median over rounds of the paired ratio N2UQ step / LSQ+ step (wall clock, and CPU time of the
process, which contention from other processes inflates less), as BENCHMARKS.md records.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from supernet import build_supernet, init_quantizers
from supernet.networks.elastic import Supernet
from supernet.runtime import keep_freed_memory
from supernet.training.config import TrainConfig
from supernet.training.sandwich import draw_sandwich, sandwich_step

FORM_OPTIONS = {"granularities": ("channel",), "w_symmetries": (True,), "a_symmetries": (False,)}


def _setup(quantizer: str, model: str, images: torch.Tensor, device: str) -> Supernet:
    torch.manual_seed(0)
    net = build_supernet(
        model,
        num_classes=10,
        image_size=images.shape[-1],
        quantizer=quantizer,
        **FORM_OPTIONS,  # type: ignore[arg-type]
    ).to(device)
    init_quantizers(net, images[:32])
    net.train()
    return net


def measure(model: str, batch: int, rounds: int, device: str, image_size: int) -> dict[str, float]:
    """Median LSQ+ and N2UQ sandwich steps and their paired ratio."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    nets = {name: _setup(name, model, images, device) for name in ("lsq", "n2uq")}
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-4) for name, net in nets.items()}
    config = TrainConfig(model=model)
    rng = np.random.default_rng(0)

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(name: str, subnets: list) -> float:  # type: ignore[type-arg]
        net, optimizer = nets[name], optimizers[name]
        weights = [layer.weight for layer in net.elastic_layers().values()]
        synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        sandwich_step(net, images, labels, subnets, config, weights)
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        optimizer.step()
        synchronize()
        cpu_times[name].append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    space = nets["lsq"].space
    # CPU time of this process too: on a shared machine it is what the step itself costs.
    cpu_times: dict[str, list[float]] = {"lsq": [], "n2uq": []}
    for _ in range(3):
        subnets = draw_sandwich(space, rng, space.w_bits)
        step("lsq", subnets)
        step("n2uq", subnets)
    times: dict[str, list[float]] = {"lsq": [], "n2uq": []}
    ratios = []
    for index in range(rounds):
        subnets = draw_sandwich(space, rng, space.w_bits)
        # alternate the order so that neither quantizer always runs on a warmer cache
        order = ("lsq", "n2uq") if index % 2 == 0 else ("n2uq", "lsq")
        measured = {name: step(name, subnets) for name in order}
        for name, seconds in measured.items():
            times[name].append(seconds)
        ratios.append(measured["n2uq"] / measured["lsq"])
    cpu_ratios = [
        n2uq / lsq for lsq, n2uq in zip(cpu_times["lsq"][3:], cpu_times["n2uq"][3:], strict=True)
    ]
    return {
        "cpu_ratio": statistics.median(cpu_ratios),
        "lsq": statistics.median(times["lsq"]),
        "n2uq": statistics.median(times["n2uq"]),
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    if args.device == "cpu":
        keep_freed_memory()
    result = measure(args.model, args.batch, args.rounds, args.device, args.image_size)
    print(
        f"{args.model} on {args.device}, batch {args.batch}, {args.image_size}×{args.image_size}, "
        f"form channel-sym-asym: N2UQ / LSQ+ sandwich step = {result['ratio']:.2f}x wall clock, "
        f"{result['cpu_ratio']:.2f}x process CPU time  "
        f"(median LSQ+ {result['lsq'] * 1e3:.1f} ms, N2UQ {result['n2uq'] * 1e3:.1f} ms, "
        f"{args.rounds} paired rounds)"
    )


if __name__ == "__main__":
    main()
