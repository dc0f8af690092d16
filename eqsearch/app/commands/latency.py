"""``eqsearch latency build|show``: a measured latency table of a space on a runtime."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    EXIT_OK,
    add_progress_argument,
    non_negative_int,
    positive_int,
    seed_int,
)
from eqsearch.app.commands.output_options import add_output_file_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, phase_bar

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.latency.table import LatencyTable


_MEASUREMENT_COUNTS = (
    ("--threads", positive_int, 2, "intra-op threads"),
    ("--batch", positive_int, 1, "images per inference"),
    ("--repeats", positive_int, 10, "timed rounds per subnet"),
    ("--holdout", non_negative_int, 50, "random whole subnets measured to state the error"),
    (
        "--calibration",
        non_negative_int,
        12,
        "random subnets whose latency calibrates the sum of layer times",
    ),
)
"""How a table is measured: flag, type, default and what it counts."""


def register(commands: Any) -> None:
    """Add ``latency`` and its sub-commands ``build`` and ``show``."""
    from eqsearch.app.commands.common import add_command_group

    actions = add_command_group(
        commands, "latency", "measured latency tables of a space on a runtime (for the search)"
    )
    build = actions.add_parser(
        "build",
        help="measure every layer at every shape and kernel class, then held-out whole "
        "subnets (no trained weights needed)",
    )
    add = build.add_argument
    add("--supernet", help="a supernet.pt checkpoint (its space; weights are not needed)")
    add("--model", help="instead of --supernet: a registered model's space, untrained")
    add("--image-size", type=positive_int, help="with --model: the input side")
    add("--num-classes", type=positive_int, default=1000, help="with --model (default 1000)")
    add("--in-channels", type=positive_int, default=3, help="with --model (default 3)")
    add("--runtime", default="onnxruntime", help="onnxruntime (default) or openvino")
    for flag, kind, default, text in _MEASUREMENT_COUNTS:
        add(flag, type=kind, default=default, help=f"{text} (default {default})")
    add("--seed", type=seed_int, default=0, help="seeds the subnets and the timing order")
    add("--probe", help="a runtime probe file (default: this machine's, probed if missing)")
    add_output_file_arguments(
        build,
        "the table (default: latency-RUNTIME.json beside the checkpoint; --force replaces "
        "one measured elsewhere too)",
    )
    add_progress_argument(build)
    build.set_defaults(handler=_cmd_build)

    show = actions.add_parser("show", help="a latency table's settings, error and classes")
    show.add_argument("table", help="a latency table file")
    show.set_defaults(handler=_cmd_show)


def _cmd_build(args: argparse.Namespace) -> int:
    from eqsearch.app.latency_building import LatencyBuildRequest, build_latency
    from eqsearch.latency.settings import LatencySettings

    request = request_from(args, LatencyBuildRequest, timing=request_from(args, LatencySettings))
    console = make_console()
    with phase_bar(console, not args.no_progress) as bar:
        outcome = build_latency(request, progress=bar)
    if outcome.probed is not None:
        console.print(f"probed {args.runtime}: {outcome.probed}")
    if outcome.reused:
        console.print(f"reused {outcome.path}: measured with the same CPU, runtime and settings")
    print_table_summary(console, outcome.table)
    if not outcome.reused:
        console.print(f"wrote {outcome.path}")
    return EXIT_OK


def print_table_summary(console: Console, table: LatencyTable) -> None:
    """The table's settings, how well it predicts held-out subnets, and its kernel classes."""
    from rich.table import Table

    key = table.key
    summary = Table(title=f"latency table: {key.runtime} {key.version} on {key.cpu}")
    summary.add_column("")
    summary.add_column("value", justify="right")
    summary.add_row("threads / batch / input", f"{key.threads} / {key.batch} / {key.image_size}")
    summary.add_row("layers / kernel classes", f"{len(table.units)} / {len(table.classes)}")
    summary.add_row("designed subnets measured", f"{table.validation.get('designed', 0):.0f}")
    summary.add_row(
        "calibration: latency / Σ profiled layers",
        f"{table.slope:.3f}" + (f" (+ {table.intercept_ms:.3f} ms)" if table.intercept_ms else ""),
    )
    designed_error = table.validation.get("designed_median_abs_error")
    if designed_error is not None:
        summary.add_row("median |error| on the designed subnets", f"{100 * designed_error:.1f}%")
    summary.add_row("median spread of measurements", f"{100 * table.spread:.1f}%")
    validation = table.validation
    if validation.get("n"):
        summary.add_row("held-out subnets", f"{validation['n']:.0f}")
        summary.add_row(
            "median / p90 |error|",
            f"{100 * validation['median_abs_error']:.1f}% / "
            f"{100 * validation['p90_abs_error']:.1f}%",
        )
        for name, label in (
            ("spearman", "Spearman ρ: latency table"),
            ("bitops_spearman", "Spearman ρ: BitOPs"),
            ("macs_spearman", "Spearman ρ: MACs"),
        ):
            value = validation.get(name, float("nan"))
            summary.add_row(label, "-" if value != value else f"{value:.3f}")
    summary.add_row("build time", f"{table.seconds:.0f} s")
    console.print(summary)


def _cmd_show(args: argparse.Namespace) -> int:
    from eqsearch.latency.table import LatencyTable

    table = LatencyTable.load(args.table)
    console = make_console()
    print_table_summary(console, table)
    console.print("kernel classes: " + ", ".join(table.classes))
    return EXIT_OK
