"""A latency table of a space measured on a runtime: every layer, then held-out whole subnets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.probing import check_runtime
from eqsearch.app.request_checks import (
    check_checkpoint_file,
    check_output_path,
    check_positive,
)
from eqsearch.app.search_latency import TABLE_PREFIX
from eqsearch.errors import InputError
from eqsearch.latency.settings import LatencySettings

if TYPE_CHECKING:
    from eqsearch.latency.kernels import KernelTable
    from eqsearch.latency.table import LatencyTable
    from eqsearch.space import ElasticSpace

"""Latency tables beside a checkpoint are named ``latency-RUNTIME.json``."""

Phases = Callable[[str], Callable[[int, int], None]]
"""A progress display: ``phases(name)`` starts a phase and returns its ``(done, total)``."""


def default_table_path(supernet: str | Path, runtime: str) -> Path:
    """``latency-RUNTIME.json`` beside a checkpoint."""
    return Path(supernet).parent / f"{TABLE_PREFIX}{runtime}.json"


@dataclass(frozen=True)
class LatencyBuildRequest:
    """The space to measure, on which runtime, with which settings (see :func:`build_latency`).

    Args:
        supernet: a ``supernet.pt`` checkpoint (its space; weights are not needed), or
        model: a registered model's space, untrained (with ``image_size``, ``num_classes``,
            ``in_channels``).
        runtime: ``onnxruntime`` or ``openvino``.
        timing: how the table is measured (threads, batch, repeats, held-out and
            calibrating subnets, seed).
        probe: a runtime probe file (default: this machine's, probed where missing).
        output: the table (default: ``latency-RUNTIME.json`` beside the checkpoint).
        force: measure again and replace a table measured elsewhere or otherwise.
    """

    supernet: str | None = None
    model: str | None = None
    image_size: int | None = None
    num_classes: int = 1000
    in_channels: int = 3
    runtime: str = "onnxruntime"
    timing: LatencySettings = LatencySettings()
    probe: str | None = None
    output: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        for name in ("image_size", "num_classes", "in_channels"):
            check_positive(getattr(self, name), name)
        if bool(self.supernet) == bool(self.model):
            raise InputError("give exactly one of {field} and model", field="supernet")
        if self.supernet and self.image_size is not None:
            raise InputError(
                "{field} goes with model; a checkpoint holds its own", field="image_size"
            )
        if self.model and self.output is None:
            raise InputError(
                "model needs {field} (there is no checkpoint to put the table beside)",
                field="output",
            )
        if self.table_path().suffix != ".json":
            raise InputError(
                f"a latency table is a .json file; got {{field}} {self.output}", field="output"
            )

    def table_path(self) -> Path:
        """Where the table goes: ``output``, or ``latency-RUNTIME.json`` beside the checkpoint."""
        if self.output:
            return Path(self.output)
        return default_table_path(self.supernet or ".", self.runtime)


@dataclass(frozen=True)
class LatencyBuildOutcome:
    """What :func:`build_latency` left.

    Attributes:
        table: the latency table; ``path``: its file.
        reused: the file already held a table measured the same way (nothing measured).
        probed: the probe file written on the way (None: a stored probe was used).
    """

    table: LatencyTable
    path: Path
    reused: bool = False
    probed: Path | None = None


def build_latency(
    request: LatencyBuildRequest, *, progress: Phases | None = None
) -> LatencyBuildOutcome:
    """Measure the request's space (the checkpoint read once) and save the table; a table
    already measured the same way at the output is reused, and a missing probe of this
    machine is taken first.

    Raises:
        InputError: bad request values, a full-precision checkpoint, an output that may not
            be written, a probe of another runtime or that does not cover the space.
    """
    from eqsearch.latency.fingerprint import machine_key
    from supernet.deployment.deploy import check_exportable
    from supernet.deployment.runtimes.exporting import input_size

    out = request.table_path()
    check_output_path(out, kind="latency", force=True, field="output")  # never another kind
    probe = _stored_probe(request)
    supernet = _supernet(request)
    check_exportable(supernet)
    space = supernet.space
    size = input_size(supernet, space.largest())
    key = machine_key(
        request.runtime, threads=request.timing.threads, batch=request.timing.batch, image_size=size
    )
    existing = _existing_table(out, key, space.fingerprint, request.force)
    if existing is not None:
        return LatencyBuildOutcome(existing, out, reused=True)
    probed = None
    if probe is None or not probe.covers(space.w_bits, space.a_bits, space.forms):
        if request.probe is not None:
            raise InputError(
                f"{request.probe} did not measure every bit width and form of the space",
                field="probe",
            )
        probe, probed = _probe_space(request, space, progress)
    table = _measure(request, supernet, probe, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.save(out)
    return LatencyBuildOutcome(table, out, probed=probed)


def _measure(
    request: LatencyBuildRequest, supernet: Any, probe: KernelTable, progress: Phases | None
) -> LatencyTable:
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.latency_build import build_latency_table

    return build_latency_table(
        supernet,
        get_runtime(request.runtime),
        probe,
        request.timing,
        progress=(lambda phase, done, total: progress(phase)(done, total)) if progress else None,
    )


def _supernet(request: LatencyBuildRequest) -> Any:
    """The supernet whose space is measured (in eval mode): the checkpoint's, read once, or
    the untrained model's."""
    if request.model:
        from supernet import build_supernet

        supernet = build_supernet(
            request.model,
            num_classes=request.num_classes,
            in_channels=request.in_channels,
            image_size=request.image_size,
        )
        return supernet.eval()
    from supernet.files.checkpoint import load_supernet

    path = check_checkpoint_file(request.supernet or "")
    supernet, checkpoint = load_supernet(path)
    if checkpoint.get("kind") == "fp":
        raise InputError(f"{path} is a full-precision model; use a supernet.pt", field="supernet")
    return supernet.eval()


def _existing_table(out: Path, key: Any, fingerprint: str, force: bool) -> LatencyTable | None:
    """A table already at ``out`` measured with the same key for the same space (reused), or
    None to build one; one measured elsewhere is refused without ``force``."""
    from eqsearch.latency.table import LatencyTable

    if not out.exists() or force:
        check_output_path(out, kind="latency", force=force, field="output")
        return None
    existing = LatencyTable.load(out)
    differences = existing.key.differences(key)
    if existing.space_fingerprint != fingerprint:
        differences.append("space")
    if differences:
        raise InputError(
            f"{out} was measured with another {', '.join(differences)}; pass --force to "
            "measure again and replace it",
            field="output",
        )
    return existing


def _stored_probe(request: LatencyBuildRequest) -> KernelTable | None:
    """The request's probe file, or this machine's stored probe of the runtime (None)."""
    from eqsearch.latency.kernels import load_probe

    if request.probe is None:
        from eqsearch.latency.cache import find_probe

        return find_probe(request.runtime)
    probe = load_probe(request.probe)
    if probe.runtime != request.runtime:
        raise InputError(
            f"{request.probe} probed {probe.runtime}, not the runtime {request.runtime}",
            field="probe",
        )
    return probe


def _probe_space(
    request: LatencyBuildRequest, space: ElasticSpace, progress: Phases | None
) -> tuple[KernelTable, Path]:
    """Probe the runtime on the space's bit widths and forms, and keep it in the cache."""
    from eqsearch.latency.cache import probe_path
    from eqsearch.latency.kernels import save_probe
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.probe import ProbeSettings, run_probe

    settings = ProbeSettings(
        w_bits=tuple(b for b in space.w_bits if b <= 8),
        a_bits=tuple(b for b in space.a_bits if b <= 8),
        forms=space.forms,
        int4=False,
        threads=request.timing.threads,
        repeats=3,
    )
    runtime = get_runtime(request.runtime)
    probe = run_probe(
        runtime, settings, progress=progress("probing the runtime") if progress else None
    )
    path = probe_path(probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_probe(probe, path)
    return probe, path
