"""Quantized vs full-precision training step, subnet switching and quantizer initialisation.

Run: ``python benchmarks/quant_overhead.py`` (add ``--compare`` for the reference quantizers,
``--user-loop`` to time the step as a user's script runs it, without this script's own
allocator call).
Prints paired medians measured in one run, two ways: *steady* (blocks of consecutive steps of
one kind, as training runs them; the first step after a switch left out) and *alternating*
(one FP32 step, then one quantized step); BENCHMARKS.md records both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F

import supernet.quantizers.lsq as lsq_module
from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.quantizers.base import ElasticQuantizer
from supernet.quantizers.fake_quant import lsq_fake_quantize
from supernet.quantizers.lsq import LsqQuantizer
from supernet.runtime import keep_freed_memory


def textbook_fake_quantize(x, step, offset, qmin, qmax, grad_scale=1.0):
    """The divide/round/clamp/multiply chain with a straight-through round (for comparison)."""
    shape = (-1,) + (1,) * (x.dim() - 1) if step.numel() > 1 else (1,)
    scaled_step = step * grad_scale + (step - step * grad_scale).detach()
    s = scaled_step.view(shape)
    shifted = x if offset is None else x - offset.view(shape)
    scaled = shifted / s
    rounded = scaled + (torch.round(scaled) - scaled).detach()
    out = torch.clamp(rounded, qmin, qmax) * s
    return out if offset is None else out + offset.view(shape)


def torch_learnable_fake_quantize(x, step, offset, qmin, qmax, grad_scale=1.0):
    """PyTorch's own learnable fake-quant ops (zero point fixed at 0 here)."""
    zero = torch.zeros_like(step)
    if step.numel() == 1:
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, step, zero, qmin, qmax, grad_scale
        )
    return torch._fake_quantize_learnable_per_channel_affine(
        x, step, zero, 0, qmin, qmax, grad_scale
    )


VARIANTS: dict[str, Callable] = {
    # and, in a supernet's training forward, the fused LSQ+ convolution and the weights
    # quantized together
    "eqsearch": lsq_fake_quantize,
    "textbook chain": textbook_fake_quantize,
    "torch learnable ops": torch_learnable_fake_quantize,
}


class StepRatios(NamedTuple):
    """Quantized / FP32 step-time ratios measured two ways in one run."""

    alternating: float
    """Median of per-round ratios, one FP32 step then one quantized step each round."""
    steady: float
    """Median of per-round ratios of block medians: ``block`` FP32 steps, then ``block``
    quantized ones, the first of each block (the switch) left out — as training runs."""
    fp_ms: float
    quantized_ms: float


def step_ratio(rounds: int, batch: int, variant: str, block: int = 4) -> StepRatios:
    """Quantized/FP32 training-step time of resnet20 at 4/4 bits, paired per round."""
    lsq_module.lsq_fake_quantize = VARIANTS[variant]
    fused = LsqQuantizer.quantized_conv2d
    shared = LsqQuantizer.shared_weight_entry
    if variant != "eqsearch":  # the reference quantizers, composed with F.conv2d, per layer
        LsqQuantizer.quantized_conv2d = ElasticQuantizer.quantized_conv2d  # type: ignore[method-assign]
        LsqQuantizer.shared_weight_entry = ElasticQuantizer.shared_weight_entry  # type: ignore[method-assign]
    torch.manual_seed(0)
    net = build_supernet("resnet20", num_classes=10)
    images = torch.randn(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))
    init_quantizers(net, images[:32])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    config = net.space.uniform(4, 4, QuantForm("channel", True, True))
    net.train()

    def train_step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        return time.perf_counter() - start

    def steps(subnet: object, count: int) -> list[float]:
        net.set_subnet(subnet)  # type: ignore[arg-type]
        return [train_step() for _ in range(count)]

    for subnet in (None, config, None, config):
        steps(subnet, 1)
    ratios, steady, fp_times, q_times = [], [], [], []
    for _ in range(rounds):
        (fp,), (quantized,) = steps(None, 1), steps(config, 1)
        ratios.append(quantized / fp)
        fp_block, q_block = steps(None, block)[1:], steps(config, block)[1:]
        steady.append(statistics.median(q_block) / statistics.median(fp_block))
        fp_times += [fp, *fp_block]
        q_times += [quantized, *q_block]
    lsq_module.lsq_fake_quantize = lsq_fake_quantize
    LsqQuantizer.quantized_conv2d = fused  # type: ignore[method-assign]
    LsqQuantizer.shared_weight_entry = shared  # type: ignore[method-assign]
    return StepRatios(
        statistics.median(ratios),
        statistics.median(steady),
        statistics.median(fp_times) * 1e3,
        statistics.median(q_times) * 1e3,
    )


def switch_time(repeats: int = 200) -> tuple[float, float]:
    """Median seconds of ``set_subnet`` on resnet50 over random per-layer-form configs.

    Returns (first switch to each config, later switches): the first resolves and caches
    each layer's (bits, form) parameter handle, later ones only look it up.
    """
    net = build_supernet("resnet50", num_classes=1000, image_size=64)
    configs = list(net.space.sample(0, repeats, forms="per_layer"))
    medians = []
    for _ in range(2):
        timings = []
        for config in configs:
            start = time.perf_counter()
            net.set_subnet(config)
            timings.append(time.perf_counter() - start)
        medians.append(statistics.median(timings))
    return medians[0], medians[1]


def init_time(repeats: int = 3) -> float:
    """Median seconds to initialise every (bits, form) entry of resnet20 from 32 images."""
    net = build_supernet("resnet20", num_classes=10)
    images = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        init_quantizers(net, images)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compare", action="store_true", help="also time reference quantizers")
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc malloc as it is (eqsearch training keeps freed memory by default)",
    )
    parser.add_argument(
        "--user-loop",
        action="store_true",
        help="as a plain user loop: no allocator call of this script's own (only what "
        "building the supernet applies)",
    )
    args = parser.parse_args()
    if args.default_allocator:  # building a supernet would apply the setting otherwise
        os.environ["EQSEARCH_MALLOC_DEFAULTS"] = "1"
    tuned = False if args.user_loop else keep_freed_memory()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"allocator kept by this script: {tuned}"
        + (" (a plain user loop: only build_supernet's setting)" if args.user_loop else "")
    )
    variants = list(VARIANTS) if args.compare else ["eqsearch"]
    for variant in variants:
        result = step_ratio(args.rounds, args.batch, variant)
        print(
            f"resnet20 4/4 train step / FP32 [{variant}]: steady {result.steady:.3f}x, "
            f"alternating {result.alternating:.3f}x (median FP32 {result.fp_ms:.1f} ms, "
            f"quantized {result.quantized_ms:.1f} ms, batch {args.batch}, {args.rounds} rounds "
            "of one step each then blocks of 4)"
        )
    cold, warm = switch_time()
    print(
        f"set_subnet on resnet50: {warm * 1e3:.3f} ms (median of 200; first switch to each "
        f"config {cold * 1e3:.3f} ms)"
    )
    print(f"init of every (bits, form) entry, resnet20, 32 images: {init_time():.2f} s")


if __name__ == "__main__":
    main()
