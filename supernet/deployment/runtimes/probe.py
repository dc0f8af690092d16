"""Measure which quantization choices a runtime runs as integer kernels, per layer role."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.latency.fingerprint import machine_key
from eqsearch.latency.kernels import FULL_BITS, KernelTable, ProbeCell
from eqsearch.space import ElasticSpace, QuantForm
from supernet.deployment.runtimes.attribution import layer_profile
from supernet.deployment.runtimes.base import Runtime, profile_runs
from supernet.deployment.runtimes.exporting import RuntimeGraph, random_images, runtime_graph
from supernet.networks.elastic import Supernet, to_supernet
from supernet.quantizers import QuantizerSpec

INT4_MAX_BITS = 4
PROBE_LAYERS = {
    "dense": "dense",
    "depthwise": "depthwise",
    "pointwise": "pointwise",
    "se_reduce": "se.reduce",
    "se_expand": "se.expand",
    "linear": "linear",
    "classifier": "classifier",
}
"""Module of the probe network → the role it stands for."""


class ProbeNet(nn.Module):
    """One layer of every role, each followed by the quantized layer it feeds in a network: a
    3×3 conv, a depth-wise conv, a 1×1 conv (each with BN and ReLU), a 1×1 conv whose output
    a squeeze-excitation block scales (not a probed role: its output has two readers), the SE
    block's two convs, global pooling, a hidden linear layer and a classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int = 10) -> None:
        super().__init__()
        self.dense = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.dense_bn = nn.BatchNorm2d(channels)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.pointwise_bn = nn.BatchNorm2d(channels)
        self.feature = nn.Conv2d(channels, channels, 1, bias=False)
        self.feature_bn = nn.BatchNorm2d(channels)
        self.se_reduce = nn.Conv2d(channels, max(8, channels // 4), 1)
        self.se_expand = nn.Conv2d(max(8, channels // 4), channels, 1)
        self.linear = nn.Linear(channels, channels)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.dense_bn(self.dense(x)))
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        x = F.relu(self.pointwise_bn(self.pointwise(x)))
        x = F.relu(self.feature_bn(self.feature(x)))
        squeezed = x.mean((2, 3), keepdim=True)
        x = x * F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(squeezed))))
        x = F.relu(self.linear(x.mean((2, 3))))
        return self.classifier(x)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe measures.

    Args:
        w_bits, a_bits: bit widths; each weight width is measured with 8-bit activations and
            each activation width with 8-bit weights (``full_grid``: every pair).
        forms: the forms measured (every form by default).
        full_grid: measure every (w, a) pair instead of one operand at a time.
        int4: also measure INT4 weight storage for weights of at most 4 bits.
        channels, image_size, in_channels: the probe network's size.
        threads, repeats: runtime threads and profiled runs per choice.
    """

    w_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    a_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    forms: tuple[QuantForm, ...] = ()
    full_grid: bool = False
    int4: bool = True
    channels: int = 64
    image_size: int = 28
    in_channels: int = 16
    threads: int = 2
    repeats: int = 5

    def __post_init__(self) -> None:
        require_positive_integers(
            self, ("channels", "image_size", "in_channels", "threads", "repeats"), "ProbeSettings."
        )
        for name in ("w_bits", "a_bits"):
            bits = tuple(sorted(set(getattr(self, name))))
            if not bits or any(not 2 <= b <= FULL_BITS for b in bits):
                raise InputError(f"ProbeSettings.{name} must hold bit widths in 2..8; got {bits}")
            object.__setattr__(self, name, bits)

    def pairs(self) -> list[tuple[int, int]]:
        """The (w, a) bit pairs measured."""
        if self.full_grid:
            return [(w, a) for w in self.w_bits for a in self.a_bits]
        pairs = [(w, FULL_BITS) for w in self.w_bits] + [(FULL_BITS, a) for a in self.a_bits]
        return list(dict.fromkeys(pairs))


def probe_supernet(settings: ProbeSettings) -> Supernet:
    """The probe network as a supernet serving every bit width and form measured, with its
    quantizers initialised on random images (their values do not change what runs)."""
    from supernet.networks.quant_init import init_quantizers

    forms = settings.forms or None
    spec = QuantizerSpec(
        w_bits=tuple(sorted({*settings.w_bits, FULL_BITS})),
        a_bits=tuple(sorted({*settings.a_bits, FULL_BITS})),
        granularities=tuple(dict.fromkeys(f.w_granularity for f in forms))
        if forms
        else QuantizerSpec().granularities,
        w_symmetries=tuple(dict.fromkeys(f.w_symmetric for f in forms)) if forms else (True, False),
        a_symmetries=tuple(dict.fromkeys(f.a_symmetric for f in forms)) if forms else (True, False),
    )
    torch.manual_seed(0)
    network = ProbeNet(settings.in_channels, settings.channels)
    images = torch.randn(16, settings.in_channels, settings.image_size, settings.image_size)
    supernet = to_supernet(
        network,
        example_input=images[:2],
        spec=spec,
        first_last="elastic",
        build_info={
            "model": "probe",
            "num_classes": 10,
            "in_channels": settings.in_channels,
            "image_size": settings.image_size,
        },
    )
    init_quantizers(supernet, images)
    return supernet.eval()


def _int4_graph(graph: RuntimeGraph, layers: Sequence[str]) -> bytes:
    """The graph with INT4 weight storage (opset 21) for ``layers``."""
    import onnx
    from onnx import version_converter

    from supernet.deployment.onnx_graph import INT4_OPSET, store_int4_weights

    model = version_converter.convert_version(onnx.load_from_string(graph.model), INT4_OPSET)
    del model.graph.value_info[:]
    store_int4_weights(model, set(layers))
    return model.SerializeToString()  # type: ignore[no-any-return]


def _measure(
    runtime: Runtime, model: bytes, graph: RuntimeGraph, images: np.ndarray, settings: ProbeSettings
) -> dict[str, tuple[float, str, bool]]:
    session = runtime.open(model, images, threads=settings.threads, profiling=True)
    try:
        summary = layer_profile(profile_runs(session, settings.repeats), graph.owners)
    finally:
        session.close()
    medians = summary.median_us
    return {layer: (medians[layer], *summary.kernels[layer]) for layer in summary.layers}


def run_probe(
    runtime: Runtime,
    settings: ProbeSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> KernelTable:
    """Export the probe network at every choice of ``settings``, run it in ``runtime`` with
    profiling, and record which kernel ran each layer (and its time against FP32)."""
    supernet = probe_supernet(settings)
    space: ElasticSpace = supernet.space
    forms = settings.forms or space.forms
    images = random_images(supernet, settings.image_size, 1)
    fp32 = runtime_graph(
        supernet, space.uniform(FULL_BITS, FULL_BITS, forms[0]), runtime, full_precision=True
    )
    reference = _measure(runtime, fp32.model, fp32, images, settings)
    jobs: list[tuple[QuantForm, int, int, str]] = []
    for form in forms:
        for w_bits, a_bits in settings.pairs():
            jobs.append((form, w_bits, a_bits, "int8"))
            if settings.int4 and w_bits <= INT4_MAX_BITS and a_bits == FULL_BITS:
                jobs.append((form, w_bits, a_bits, "int4"))
    cells: list[ProbeCell] = []
    for done, (form, w_bits, a_bits, storage) in enumerate(jobs):
        config = space.uniform(w_bits, a_bits, form)
        if storage == "int4":
            graph = runtime_graph(supernet, config, None)
            model = _int4_graph(graph, list(graph.owners.layers))
        else:
            graph = runtime_graph(supernet, config, runtime)
            model = graph.model
        measured = _measure(runtime, model, graph, images, settings)
        for layer, role in PROBE_LAYERS.items():
            layer_us, kernel, integer = measured[layer]
            cells.append(
                ProbeCell(
                    role,
                    str(form),
                    w_bits,
                    a_bits,
                    storage,
                    kernel,
                    integer,
                    layer_us,
                    reference[layer][0],
                )
            )
        if progress is not None:
            progress(done + 1, len(jobs))
    key = machine_key(
        runtime.name, threads=settings.threads, batch=1, image_size=settings.image_size
    )
    return KernelTable(key, tuple(cells))
