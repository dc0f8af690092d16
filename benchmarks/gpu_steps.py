"""Training steps per second on one device: FP32, W4/A4 and sandwich steps, with and without
``--amp bf16`` and ``--compile``; host synchronisations per sandwich step; the share of a
sandwich-step loop's time the GPU is busy.

Run: ``python benchmarks/gpu_steps.py --device cuda`` (224×224, resnet18 and oqa_mbv3, batch 64
and 128; ``benchmarks/gpu_suite.sh`` runs it with the rest of the GPU check). Prints one
markdown row per figure as it is measured. Every step is the training loop's own: the forward
under the autocast of ``--amp``, the backward, Adam with gradient clipping; the sandwich step is
``sandwich_step`` (H, one random subnet, L, WDR) with the loss terms read one step late, as
``train`` runs it. The models are not calibrated (their initial steps): speed does not depend
on the values. ``--device cpu`` forces the device path (``EQSEARCH_DEVICE_PATH``), so a CPU run
executes the code a GPU runs (for a smoke test at tiny sizes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from eqsearch.space import QuantForm
from supernet import build_supernet, runtime
from supernet.runtime import compiled_quantizers, device_path
from supernet.training.amp import autocast, gradient_scaler, optimizer_step
from supernet.training.config import TrainConfig
from supernet.training.divergence import LaggedLosses, check_finite
from supernet.training.host_reads import counting_host_reads
from supernet.training.losses import guided_loss, wdr_weights
from supernet.training.sandwich import draw_sandwich, sandwich_step


def _row(figure: str, value: str, detail: str) -> None:
    print(f"| {figure} | {value} | {detail} |", flush=True)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One model at one batch size on one device, and its three kinds of step."""

    def __init__(self, model: str, batch: int, image_size: int, device: torch.device) -> None:
        torch.manual_seed(0)
        self.device = device
        self.supernet = build_supernet(model, num_classes=1000, image_size=image_size).to(device)
        self.supernet.train()
        self.images = torch.randn(batch, 3, image_size, image_size, device=device)
        self.labels = torch.randint(0, 1000, (batch,), device=device)
        self.parameters = list(self.supernet.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=1e-5)
        self.space = self.supernet.space
        self.weights = wdr_weights(self.supernet)
        self.step_index = 0

    def config(self, amp: str) -> TrainConfig:
        return TrainConfig(model="resnet18", dataset="digits", amp=amp)

    def single(self, subnet: Any, amp: str) -> Callable[[], None]:
        """A step of one subnet (None: the full-precision model)."""
        scaler = gradient_scaler(self.device, amp)

        def step() -> None:
            self.supernet.set_subnet(subnet)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, amp):
                loss = guided_loss(self.supernet(self.images), self.labels, None)
            (loss if scaler is None else scaler.scale(loss)).backward()
            optimizer_step(self.optimizer, self.parameters, 1.0, scaler)

        return step

    def sandwich(self, amp: str) -> tuple[Callable[[], None], LaggedLosses]:
        """A sandwich step as ``train`` runs it, and its loss reader."""
        config = self.config(amp)
        scaler = gradient_scaler(self.device, amp)
        losses = LaggedLosses.for_device(
            lambda terms, step: check_finite(terms, 0, step), self.device
        )

        def step() -> None:
            rng = np.random.default_rng([0, self.step_index])
            subnets = draw_sandwich(self.space, rng, self.space.w_bits)
            self.optimizer.zero_grad(set_to_none=True)
            terms = sandwich_step(
                self.supernet, self.images, self.labels, subnets, config, self.weights, scaler
            )
            losses.add(terms, self.step_index)
            optimizer_step(self.optimizer, self.parameters, config.grad_clip, scaler)
            self.step_index += 1

        return step, losses

    def rate(self, step: Callable[[], None], warmup: int, rounds: int) -> float:
        """Steps per second over ``rounds`` steps after ``warmup`` ones."""
        for _ in range(warmup):
            step()
        _synchronize(self.device)
        started = time.perf_counter()
        for _ in range(rounds):
            step()
        _synchronize(self.device)
        return rounds / (time.perf_counter() - started)


def host_reads(bench: Bench, amp: str) -> tuple[int, int | None]:
    """(reads of tensor values into Python, synchronising CUDA calls) of one sandwich step
    (Adam's host-side step counters left out), the step before read back with it."""
    step, losses = bench.sandwich(amp)
    step()

    def optimizer_counter(tensor: torch.Tensor) -> bool:
        return any(tensor is s.get("step") for s in bench.optimizer.state.values())

    cuda = bench.device.type == "cuda"
    with (
        warnings.catch_warnings(record=True) as caught,
        counting_host_reads(ignore=optimizer_counter) as reads,
    ):
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    losses.flush()
    synchronising = [w for w in caught if "synchroniz" in str(w.message)]
    return reads.count, len(synchronising) if cuda else None


def busy_share(bench: Bench, amp: str, rounds: int) -> float | None:
    """The share of a loop of sandwich steps' wall time in which a CUDA kernel runs."""
    if bench.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    step, _ = bench.sandwich(amp)
    step()
    _synchronize(bench.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        started = time.perf_counter()
        for _ in range(rounds):
            step()
        _synchronize(bench.device)
        wall = time.perf_counter() - started
    intervals = sorted(
        (event.time_range.start, event.time_range.end)
        for event in profiler.events()
        if event.device_type == torch.autograd.DeviceType.CUDA
    )
    busy, end = 0.0, -math.inf
    for start, stop in intervals:  # the union of the kernels' intervals (µs)
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy / 1e6 / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="resnet18,oqa_mbv3")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--amp", default="none,bf16", help="autocast modes to time")
    parser.add_argument("--compile", default="off,on", help="quantizer compile settings to time")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runtime.COMPILE_BACKEND = args.compile_backend
    forced = device_path() if device.type == "cpu" else nullcontext()
    form = QuantForm.parse("channel-sym-sym")
    with forced:
        for model in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                bench = Bench(model, batch, args.image_size, device)
                where = f"{model}, {args.image_size}², batch {batch}"
                w4a4 = bench.space.uniform(4, 4, form, arch="largest")
                for amp in args.amp.split(","):
                    fp32 = bench.rate(bench.single(None, amp), args.warmup, args.rounds)
                    _row(f"FP32 steps/s, {where}, amp {amp}", f"{fp32:.2f}", "")
                    for compile_setting in args.compile.split(","):
                        with compiled_quantizers(compile_setting == "on"):
                            single = bench.rate(bench.single(w4a4, amp), args.warmup, args.rounds)
                            sandwich = bench.rate(bench.sandwich(amp)[0], args.warmup, args.rounds)
                        detail = f"amp {amp}, compile {compile_setting}"
                        _row(
                            f"W4/A4 steps/s, {where}",
                            f"{single:.2f}",
                            f"{detail}; {fp32 / single:.2f}× the FP32 step (target ≤ 1.3×)",
                        )
                        _row(
                            f"sandwich steps/s, {where}",
                            f"{sandwich:.2f}",
                            f"{detail}; {fp32 / sandwich:.2f}× the FP32 step (target ≤ 3.5×)",
                        )
                reads, synchronising = host_reads(bench, "none")
                _row(
                    f"host reads per sandwich step, {where}",
                    str(reads),
                    f"{len(bench.supernet.elastic_layers())} quantized layers; "
                    + (
                        "n/a on the CPU"
                        if synchronising is None
                        else f"{synchronising} synchronising CUDA calls"
                    ),
                )
                share = busy_share(bench, "none", args.rounds)
                if share is not None:
                    _row(
                        f"GPU busy, sandwich loop, {where}",
                        f"{100 * share:.1f} %",
                        "target ≥ 90 %",
                    )
                del bench
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
