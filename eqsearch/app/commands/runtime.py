"""``eqsearch runtime probe``: which quantization choices a runtime runs as integer kernels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eqsearch.app.commands.common import (
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_progress_argument,
    int_list,
    positive_int,
)
from eqsearch.app.console import make_console, print_frame

RUNTIME_NAMES = ("onnxruntime", "openvino")


def register(commands: Any) -> None:
    """Add ``runtime`` and its sub-command ``probe``."""
    from eqsearch.app.commands.common import add_command_group

    actions = add_command_group(
        commands, "runtime", "measure what an inference runtime runs: integer kernels or float"
    )
    probe = actions.add_parser(
        "probe",
        help="export one layer of every kind at every bit width and form, run it, and read "
        "from the runtime's profile which kernel ran it",
    )
    add = probe.add_argument
    add("--runtime", required=True, help=f"one of {', '.join(RUNTIME_NAMES)}")
    add("--threads", type=positive_int, default=2, help="intra-op threads (default 2)")
    add("--w-bits", default="2-8", help="weight bit widths (default 2-8)")
    add("--a-bits", default="2-8", help="activation bit widths (default 2-8)")
    add("--forms", default="all", help="comma-separated forms, or all (default)")
    add(
        "--full-grid",
        action="store_true",
        help="every (W, A) pair (default: each width with the other operand at 8 bits)",
    )
    add("--no-int4", action="store_true", help="skip the INT4 weight storage variants")
    add("--repeats", type=positive_int, default=5, help="profiled runs per choice (default 5)")
    add("--out", help="the probe file (default: this machine's cache, $EQSEARCH_CACHE)")
    add_force_argument(probe, "--out file")
    add_progress_argument(probe)
    probe.set_defaults(handler=_cmd_probe)


def parse_forms(text: str) -> tuple[Any, ...]:
    """``all`` or comma-separated forms (``channel-sym-sym,tensor-asym-asym``)."""
    from eqsearch.space import ALL_FORMS, QuantForm

    if text.strip().lower() == "all":
        return ALL_FORMS
    forms = tuple(QuantForm.parse(part) for part in text.split(",") if part.strip())
    if not forms:
        raise UsageError("--forms must name at least one form, or all")
    return tuple(dict.fromkeys(forms))


def check_runtime(name: str) -> None:
    """Exit 2 with one line for an unknown runtime or one that is not installed."""
    from eqsearch.latency.fingerprint import runtime_version

    if name not in RUNTIME_NAMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIME_NAMES)}; got {name!r}")
    runtime_version(name)


def _cmd_probe(args: argparse.Namespace) -> int:
    from eqsearch.files import check_output_file

    check_runtime(args.runtime)
    forms = parse_forms(args.forms)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output_file(out, kind="probe", force=args.force)
    from eqsearch.latency.cache import probe_path
    from eqsearch.latency.kernels import save_probe
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.probe import ProbeSettings

    settings = ProbeSettings(
        w_bits=int_list(args.w_bits),
        a_bits=int_list(args.a_bits),
        forms=forms,
        full_grid=args.full_grid,
        int4=not args.no_int4,
        threads=args.threads,
        repeats=args.repeats,
    )
    console = make_console()
    runtime = get_runtime(args.runtime)
    table = _probe(console, runtime, settings, not args.no_progress)
    import pandas as pd

    frame = pd.DataFrame(table.summary()).set_index("role")
    frame = frame.rename(columns={"vs_fp32": "FP32 time / layer time"})
    title = (
        f"{args.runtime} {table.key.version}, {args.threads} threads, {table.key.cpu}: "
        "integer kernels and float fallbacks (W/A bit pairs)"
    )
    print_frame(console, frame, title)
    path = out or probe_path(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_probe(table, path)
    console.print(f"wrote {path}")
    return EXIT_OK


def _probe(console: Any, runtime: Any, settings: Any, progress: bool) -> Any:
    from eqsearch.app.console import phase_bar
    from supernet.deployment.runtimes.probe import run_probe

    with phase_bar(console, progress) as bar:
        return run_probe(runtime, settings, progress=bar("probing choices") if bar else None)
