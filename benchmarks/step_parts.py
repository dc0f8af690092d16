"""Where a quantized training step's extra time goes, measured part by part in one process.

Run: ``python benchmarks/step_parts.py``. Prints three figures (BENCHMARKS.md records them):

1. one layer's per-channel weight quantization and its gradients, warm (repeated back to back)
   and cold (after touching 64 MB, as between two convolutions of a step), best of repeats;
   and the shared weight node's two kernels over all of ResNet-20's weights (W4, per channel);
2. ResNet-20's first layer (its input, the images, takes no gradient), forward + backward:
   full precision, quantized through the weight gradient's convolution (the library), and
   quantized with forward convolutions of the input's derivatives (the form before);
3. the whole W4/A4 step against the FP32 step, with the layers' weights quantized together
   (the library) and each layer quantizing its own, interleaved in one process (blocks of
   4 steps of each kind, the first after a switch left out);
4. the same step with the activations' backward mask on torch's passes (the library on
   several threads) and on the one-pass kernel (the library on one thread), interleaved;
5. the same step with the forward's convolutions on the integer grids (the library, where
   oneDNN's int8 convolution is exact here) and in float32, interleaved;
6. one convolution, int8 (packing its weight included) against float32, at ResNet-20's 3×3
   shapes and batch 1–64: where ``integer_conv.MIN_MULTIPLY_ADDS`` comes from.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

import supernet.networks.elastic as elastic_module
import supernet.quantizers.fake_quant as fake_quant_module
from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.quantizers import integer_conv, lsq_row_kernels
from supernet.quantizers.base import ConvGeometry
from supernet.quantizers.per_channel_fake_quant import per_channel_backward, per_channel_forward
from supernet.runtime import keep_freed_memory


def _best_us(call: Callable[[], object], repeats: int, before: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return min(timings) * 1e6  # the best of the repeats, as timeit reports


def weight_call_times(repeats: int) -> list[tuple[tuple[int, ...], float, float]]:
    """(shape, warm µs, cold µs) of one layer's weight quantization forward + backward, the
    best of ``repeats`` calls each."""
    flush = torch.empty(16_000_000)
    rows = []
    for shape in ((16, 16, 3, 3), (64, 64, 3, 3)):
        weight = torch.randn(shape) * 0.1
        step = torch.full((shape[0],), 0.02)
        grad = torch.randn(shape)

        def both(
            weight: torch.Tensor = weight, step: torch.Tensor = step, grad: torch.Tensor = grad
        ) -> None:
            result = per_channel_forward(weight, step, None, -8, 7)
            per_channel_backward(grad.clone(), weight, result, -8, 7, 0.01, in_place=True)

        both()
        warm = _best_us(both, repeats, lambda: None)
        cold = _best_us(both, repeats, lambda: flush.add_(1.0))
        rows.append((shape, warm, cold))
    return rows


def shared_kernel_times(repeats: int) -> tuple[int, float, float]:
    """(values, µs, µs): the per-channel kernels of the shared weight node over ResNet-20's
    W4 per-channel weights — quantization and gradients — the best of ``repeats`` calls."""
    torch.manual_seed(0)
    net = build_supernet("resnet20", num_classes=10)
    init_quantizers(net, torch.randn(32, 3, 32, 32))
    net.set_subnet(net.space.uniform(4, 4, QuantForm("channel", True, True)))
    entries = []
    for layer in net.elastic_layers().values():
        entry = layer.quantizer.shared_weight_entry(layer.weight, layer.active.handle)
        if entry is not None:
            entries.append(entry)
    rows = lsq_row_kernels.layer_rows(
        tuple(
            (e.weight.shape[0], e.weight[0].numel(), e.qmin, e.qmax, e.offset is not None)
            for e in entries
        )
    )
    flat = torch.cat([e.weight.detach().reshape(-1) for e in entries])
    steps = torch.cat([e.log_step.detach() for e in entries]).exp()
    scales = np.repeat([e.grad_scale for e in entries], [e.weight.shape[0] for e in entries])
    constants = lsq_row_kernels.quantize_rows(flat, rows, steps, 1e-8, steps).constants
    grad = torch.randn_like(flat)
    forward = _best_us(
        lambda: lsq_row_kernels.quantize_rows(flat, rows, steps, 1e-8, steps), repeats, lambda: None
    )
    backward = _best_us(
        lambda: lsq_row_kernels.row_gradients(grad.clone(), flat, rows, constants, scales, steps),
        repeats,
        lambda: None,
    )
    return flat.numel(), forward, backward


def first_layer_times(repeats: int) -> dict[str, float]:
    """Median ms of ResNet-20's first layer forward + backward at batch 64, per variant."""
    torch.manual_seed(0)
    net = build_supernet("resnet20", num_classes=10)
    images = torch.randn(64, 3, 32, 32)
    init_quantizers(net, images[:32])
    config = net.space.uniform(4, 4, QuantForm("channel", True, True))
    layer = net.model.conv1
    upstream = torch.randn(64, 16, 32, 32)

    def library() -> None:
        layer(images).backward(upstream)

    def form_before() -> None:
        # the quantized input plus forward convolutions of its derivatives, as the layer
        # still computes it for convolutions the direction convolution cannot take
        handle = layer.active.handle
        x_hat, pairs = layer.quantizer.input_directions(images, handle)
        weight = layer.quantizer.quantize_weight(layer.weight, handle)
        out = layer._conv_forward(x_hat, weight, layer.bias)
        for direction, parameter in pairs:
            response = layer._conv_forward(direction, weight.detach(), None)
            out = out + response * (parameter - parameter.detach())
        out.backward(upstream)

    variants = {"FP32": library, "quantized": library, "quantized, form before": form_before}
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            net.set_subnet(None if name == "FP32" else config)
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e3 for name, values in timings.items()}


def step_ratios(rounds: int, block: int = 4) -> dict[str, float]:
    """Quantized / FP32 step, weights together and per layer, interleaved in one process."""
    torch.manual_seed(0)
    net = build_supernet("resnet20", num_classes=10)
    images = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    init_quantizers(net, images[:32])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    config = net.space.uniform(4, 4, QuantForm("channel", True, True))
    together = elastic_module.weights_quantized_together
    net.train()

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        return time.perf_counter() - start

    kernel_threads = fake_quant_module.MASK_KERNEL_MAX_THREADS
    integer = integer_conv.ENABLED

    def steps(kind: str) -> float:
        net.set_subnet(None if kind == "FP32" else config)
        integer_conv.ENABLED = integer and kind != "float convolutions"
        elastic_module.weights_quantized_together = (  # type: ignore[assignment]
            (lambda layers: contextlib.nullcontext()) if kind == "per layer" else together
        )
        fake_quant_module.MASK_KERNEL_MAX_THREADS = (
            torch.get_num_threads() if kind == "mask kernel" else kernel_threads
        )
        return statistics.median([step() for _ in range(block)][1:])

    kinds = ("FP32", "together", "per layer", "mask kernel", "float convolutions")
    for kind in kinds:
        steps(kind)
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for index in range(rounds):
        for kind in kinds if index % 2 else kinds[::-1]:
            results[kind].append(steps(kind))
    elastic_module.weights_quantized_together = together
    fake_quant_module.MASK_KERNEL_MAX_THREADS = kernel_threads
    integer_conv.ENABLED = integer

    def ratio(first: str, second: str) -> float:
        return statistics.median(
            a / b for a, b in zip(results[first], results[second], strict=True)
        )

    return {
        "together / FP32": ratio("together", "FP32"),
        "per layer / FP32": ratio("per layer", "FP32"),
        "together / per layer": ratio("together", "per layer"),
        "mask kernel / FP32": ratio("mask kernel", "FP32"),
        "library / mask kernel": ratio("together", "mask kernel"),
        "float convolutions / FP32": ratio("float convolutions", "FP32"),
        "library / float convolutions": ratio("together", "float convolutions"),
        "FP32 ms": statistics.median(results["FP32"]) * 1e3,
    }


def convolution_times(repeats: int) -> list[tuple[int, int, int, int, float, float]]:
    """(batch, channels, size, multiply-adds, µs int8, µs float32): one 3×3 convolution of
    grid values on ResNet-20's shapes, medians of ``repeats`` calls each."""
    generator = torch.Generator().manual_seed(0)
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1, False)
    rows = []
    for channels, size in ((16, 32), (64, 8)):
        weight = integer_conv.WeightLevels(
            0.01 + 0.02 * torch.rand(channels, generator=generator),
            torch.randint(-8, 8, (channels, channels, 3, 3), generator=generator).to(torch.int8),
        )
        w_hat = weight.levels.float() * weight.steps.view(-1, 1, 1, 1)
        for batch in (1, 4, 16, 64):
            levels = torch.randint(0, 16, (batch, channels, size, size), generator=generator)
            levels = levels.to(torch.uint8)
            x_hat = (levels.float() - 8) * 0.05

            runs = (
                functools.partial(
                    integer_conv.integer_conv2d, levels, 0.05, -8, weight, None, geometry
                ),
                functools.partial(F.conv2d, x_hat, w_hat, padding=1),
            )
            medians = []
            for run in runs:
                run()
                timings = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    timings.append(time.perf_counter() - start)
                medians.append(statistics.median(timings) * 1e6)
            count = integer_conv.multiply_adds(levels, w_hat.shape, geometry)
            rows.append((batch, channels, size, count, medians[0], medians[1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for shape, warm, cold in weight_call_times(args.repeats * 5):
        print(
            f"weight {tuple(shape)}: quantization + gradients {warm:.0f} µs warm, "
            f"{cold:.0f} µs after touching 64 MB"
        )
    values, forward, backward = shared_kernel_times(args.repeats * 5)
    print(
        f"shared weight node, resnet20's {values} weight values: quantize_rows {forward:.0f} µs, "
        f"row_gradients {backward:.0f} µs"
    )
    first = first_layer_times(args.repeats)
    print(
        "resnet20 first layer, forward + backward at batch 64: "
        + ", ".join(f"{name} {value:.2f} ms" for name, value in first.items())
    )
    ratios = step_ratios(args.rounds)
    print(
        f"resnet20 W4/A4 step, interleaved ({args.rounds} rounds, FP32 "
        f"{ratios['FP32 ms']:.1f} ms): weights together / FP32 "
        f"{ratios['together / FP32']:.3f}x, per layer / FP32 {ratios['per layer / FP32']:.3f}x, "
        f"together / per layer {ratios['together / per layer']:.3f}x"
    )
    threads = torch.get_num_threads()
    library_mask = "kernel" if threads <= fake_quant_module.MASK_KERNEL_MAX_THREADS else "torch"
    print(
        f"the same, activation mask on the one-pass kernel / FP32 "
        f"{ratios['mask kernel / FP32']:.3f}x; the library ({threads} threads: {library_mask}) "
        f"/ mask kernel {ratios['library / mask kernel']:.3f}x"
    )
    exact = integer_conv.available()
    print(
        f"the same, convolutions in float32 / FP32 {ratios['float convolutions / FP32']:.3f}x; "
        f"the library (int8 convolutions {'exact here' if exact else 'not exact here: off'}) "
        f"/ float convolutions {ratios['library / float convolutions']:.3f}x"
    )
    if exact:
        for batch, channels, size, count, integer, floating in convolution_times(args.repeats):
            print(
                f"3x3 convolution {batch}x{channels}x{size}x{size} ({count / 1e6:.1f}M "
                f"multiply-adds): int8 {integer:.0f} µs, float32 {floating:.0f} µs, "
                f"{integer / floating:.2f}x"
                + (" (the library's choice)" if count >= integer_conv.MIN_MULTIPLY_ADDS else "")
            )


if __name__ == "__main__":
    main()
