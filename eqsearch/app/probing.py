"""A runtime probed: which bit widths and forms it runs as integer kernels (a probe file)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.app.request_checks import check_output_path, check_positive, keyword_arguments
from eqsearch.errors import InputError
from eqsearch.space import ALL_FORMS, QuantForm

RUNTIME_NAMES = ("onnxruntime", "openvino")
"""The runtimes eqsearch probes, builds latency tables for and exports to."""

DEFAULT_CHOICES = (2, 3, 4, 5, 6, 7, 8)


def check_runtime(name: str, field: str = "runtime") -> None:
    """Refuse an unknown runtime, or one that is not installed, before any work.

    Raises:
        InputError: naming ``field``.
    """
    from eqsearch.latency.fingerprint import runtime_version

    if name not in RUNTIME_NAMES:
        raise InputError(
            f"{{field}} must be one of {', '.join(RUNTIME_NAMES)}; got {name!r}", field=field
        )
    runtime_version(name)


def parse_forms(text: str) -> tuple[QuantForm, ...]:
    """``all`` or comma-separated forms (``channel-sym-sym,tensor-asym-asym``).

    Raises:
        InputError: naming the field ``forms``: no form, or one that is not a form.
    """
    if text.strip().lower() == "all":
        return ALL_FORMS
    forms = tuple(QuantForm.parse(part) for part in text.split(",") if part.strip())
    if not forms:
        raise InputError("{field} must name at least one form, or all", field="forms")
    return tuple(dict.fromkeys(forms))


@dataclass(frozen=True)
class ProbeRequest:
    """A probe of one runtime (see :func:`probe_runtime`).

    Args:
        runtime: ``onnxruntime`` or ``openvino`` (installed).
        w_choices, a_choices: the weight and activation bit widths measured.
        forms: the forms measured (default: every form).
        full_grid: every (W, A) pair instead of each width with the other operand at 8 bits.
        int4: also measure INT4 weight storage.
        threads, repeats: the runtime's threads and profiled runs per choice.
        output: the probe file (None: this machine's cache).
        force: replace an existing ``output``.
    """

    runtime: str
    w_choices: tuple[int, ...] = DEFAULT_CHOICES
    a_choices: tuple[int, ...] = DEFAULT_CHOICES
    forms: tuple[QuantForm, ...] = ALL_FORMS
    full_grid: bool = False
    int4: bool = True
    threads: int = 2
    repeats: int = 5
    output: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        for name in ("threads", "repeats"):
            check_positive(getattr(self, name), name, optional=False)
        for name in ("w_choices", "a_choices"):
            if not getattr(self, name):
                raise InputError("{field} must name at least one bit width", field=name)
        if not self.forms:
            raise InputError("{field} must name at least one form, or all", field="forms")


@dataclass(frozen=True)
class ProbeOutcome:
    """A probe and where it was saved.

    Attributes:
        table: the :class:`eqsearch.latency.kernels.KernelTable` measured.
        path: the probe file written.
    """

    table: Any
    path: Path


Phases = Callable[[str], Callable[[int, int], None]]
"""A progress display: ``phases(name)`` starts a phase and returns its ``(done, total)``."""


def probe_runtime(request: ProbeRequest, *, progress: Phases | None = None) -> ProbeOutcome:
    """Export one layer of every kind at every requested bit width and form, run it in the
    runtime, read from its profile which kernel ran it, and save the probe.

    ``progress`` (optional) shows the phase ``probing choices`` once the output is checked.

    Raises:
        InputError: ``output`` may not be written.
    """
    from eqsearch.latency.cache import probe_path
    from eqsearch.latency.kernels import save_probe
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.probe import ProbeSettings, run_probe

    out = None
    if request.output is not None:
        out = check_output_path(request.output, kind="probe", force=request.force, field="output")
    settings = ProbeSettings(
        **keyword_arguments(request, ProbeSettings),
        w_bits=request.w_choices,
        a_bits=request.a_choices,
    )
    runtime = get_runtime(request.runtime)
    table = run_probe(runtime, settings, progress=progress("probing choices") if progress else None)
    path = out or probe_path(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_probe(table, path)
    return ProbeOutcome(table, path)
