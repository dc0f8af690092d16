"""What a runtime does with an exported subnet: integer kernels vs float, and its latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from supernet.deployment.runtimes.attribution import LayerOwners, layer_profile
from supernet.deployment.runtimes.base import Runtime, profile_runs
from supernet.deployment.runtimes.timing import interleaved_timing


@dataclass(frozen=True)
class RuntimeReport:
    """An exported subnet measured in a runtime next to the FP32 export of its architecture.

    Attributes:
        runtime: the runtime's name.
        integer_layers: layers whose conv or matmul ran as an integer kernel.
        float_layers: layers that ran in float (a fallback).
        kernels: per layer, the kernel that ran its conv or matmul.
        latency_ms, fp32_latency_ms: medians of interleaved timed runs.
        spread: the larger relative inter-quartile range of the two.
        threads, batch, repeats: how it was timed.
    """

    runtime: str
    integer_layers: tuple[str, ...]
    float_layers: tuple[str, ...]
    kernels: dict[str, str]
    latency_ms: float
    fp32_latency_ms: float
    spread: float
    threads: int
    batch: int
    repeats: int

    @property
    def speedup(self) -> float:
        """FP32 latency over the export's (> 1: the quantized export runs faster)."""
        return self.fp32_latency_ms / self.latency_ms


def measure_export(
    runtime: Runtime,
    model: bytes,
    owners: LayerOwners,
    fp32_model: bytes,
    images: npt.NDArray[np.float32],
    *,
    threads: int = 2,
    repeats: int = 20,
) -> RuntimeReport:
    """Profile ``model`` once to read each layer's kernel, then time it and ``fp32_model``
    in interleaved rounds."""
    session = runtime.open(model, images, threads=threads, profiling=True)
    try:
        kernels = layer_profile(profile_runs(session, 3), owners).kernels
    finally:
        session.close()
    sessions = [
        runtime.open(model, images, threads=threads, profiling=False),
        runtime.open(fp32_model, images, threads=threads, profiling=False),
    ]
    try:
        timing = interleaved_timing(sessions, repeats)
    finally:
        for opened in sessions:
            opened.close()
    medians = timing.median_ms
    return RuntimeReport(
        runtime=runtime.name,
        integer_layers=tuple(layer for layer, (_, integer) in kernels.items() if integer),
        float_layers=tuple(layer for layer, (_, integer) in kernels.items() if not integer),
        kernels={layer: kernel for layer, (kernel, _) in kernels.items()},
        latency_ms=float(medians[0]),
        fp32_latency_ms=float(medians[1]),
        spread=float(timing.spread.max()),
        threads=threads,
        batch=len(images),
        repeats=repeats,
    )


def int4_runs_integer(supernet: Any, layer: str, runtime: str) -> bool:
    """Whether the runtime's stored probe of this machine ran INT4 weights of the layer's
    role as an integer kernel (no probe: False; INT4 fell back to float on every runtime
    probed so far)."""
    from eqsearch.latency.cache import find_probe
    from supernet.deployment.runtimes.design import layer_roles

    probe = find_probe(runtime)
    if probe is None:
        return False
    roles = dict(
        zip((spec.name for spec in supernet.space.layers), layer_roles(supernet), strict=True)
    )
    return layer in roles and probe.int4_integer(roles[layer])


def runtime_report(
    supernet: Any,
    config: Any,
    runtime: Runtime,
    model: Any,
    images: Any,
    threads: int,
) -> RuntimeReport:
    """:func:`measure_export` of an exported ONNX model (an ``onnx.ModelProto``) of a fixed
    supernet's ``config``, next to the FP32 export of the same architecture, on one of
    ``images`` at a time."""
    from supernet.deployment.runtimes.exporting import runtime_graph

    fp32 = runtime_graph(supernet, config, None, full_precision=True)
    owners = LayerOwners(model, tuple(supernet.elastic_layers()))
    batch = images[:1].float().cpu().numpy()
    return measure_export(
        runtime, model.SerializeToString(), owners, fp32.model, batch, threads=threads
    )
