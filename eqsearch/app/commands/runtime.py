"""``eqsearch runtime probe``: which quantization choices a runtime runs as integer kernels."""

from __future__ import annotations

import argparse
from typing import Any

from eqsearch.app.commands.common import (
    EXIT_OK,
    add_progress_argument,
    add_renamed_option,
    int_list,
    positive_int,
)
from eqsearch.app.commands.output_options import add_output_file_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, phase_bar, print_frame
from eqsearch.app.probing import RUNTIME_NAMES


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
    for operand, what in (("w", "weight"), ("a", "activation")):
        add(f"--{operand}-choices", default="2-8", type=int_list, help=f"{what} bit widths")
        add_renamed_option(
            probe,
            f"--{operand}-bits",
            f"--{operand}-choices",
            dest=f"{operand}_choices",
            type=int_list,
        )
    add("--forms", default="all", help="comma-separated forms, or all (default)")
    add(
        "--full-grid",
        action="store_true",
        help="every (W, A) pair (default: each width with the other operand at 8 bits)",
    )
    add("--no-int4", action="store_true", help="skip the INT4 weight storage variants")
    add("--repeats", type=positive_int, default=5, help="profiled runs per choice (default 5)")
    add_output_file_arguments(
        probe, "the probe file (default: this machine's cache, $EQSEARCH_CACHE)"
    )
    add_progress_argument(probe)
    probe.set_defaults(handler=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    from eqsearch.app.probing import ProbeRequest, parse_forms, probe_runtime

    forms = parse_forms(args.forms)
    request = request_from(args, ProbeRequest, forms=forms, int4=not args.no_int4)
    console = make_console()
    with phase_bar(console, not args.no_progress) as bar:
        outcome = probe_runtime(request, progress=bar)
    table = outcome.table
    title = (
        f"{args.runtime} {table.key.version}, {args.threads} threads, {table.key.cpu}: "
        "integer kernels and float fallbacks (W/A bit pairs)"
    )
    print_frame(console, _summary_frame(table), title)
    console.print(f"wrote {outcome.path}")
    return EXIT_OK


def _summary_frame(table: Any) -> Any:
    """The probe's summary by role, with its speed column named for the reader."""
    import pandas as pd

    frame = pd.DataFrame(table.summary()).set_index("role")
    return frame.rename(columns={"vs_fp32": "FP32 time / layer time"})
