"""What ``nsga`` and ``strategy`` share: their options, the request they make, the printout."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    finite_float,
    trust_named_factories,
)
from eqsearch.app.commands.data_options import add_data_arguments

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.app.search import SearchOutcome
    from eqsearch.app.search_request import SearchRequest

FIELD_FLAGS = {
    "size_bytes": "--size",
    "bitops_budget": "--bitops",
    "size_budget": "--size",
    "macs_budget": "--macs",
    "latency_budget": "--latency-ms",
}
"""The problem's budget names (``make_problem`` keywords, constraint names) as flags."""

REQUEST_OPTIONS = (
    "supernet",
    "objectives",
    "target",
    "w_bits",
    "a_bits",
    "latency_ms",
    "latency_table",
    "oracle",
    "predictor",
    "seed",
    "out",
    "force",
    "bn_images",
    "val_images",
    "device",
    "dataset",
    "data_root",
    "transforms",
    "log",
)
"""Options of both commands that are fields of :class:`SearchRequest` under their own name."""


def add_bits_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """``--w-bits`` and ``--a-bits``: budgets on the searched layers' average bits."""
    add = parser.add_argument
    add("--w-bits", type=finite_float, help="budget: average weight bits of the searched layers")
    add(
        "--a-bits", type=finite_float, help="budget: average activation bits of the searched layers"
    )


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """``--objectives`` and ``--target`` (the hardware preset of forms)."""
    from eqsearch.problem import OBJECTIVE_NAMES
    from eqsearch.targets import TARGET_NAMES

    parser.add_argument(
        "--objectives",
        default="accuracy,bitops",
        help=f"comma-separated, from {', '.join(OBJECTIVE_NAMES)} (default accuracy,bitops)",
    )
    parser.add_argument(
        "--target",
        default="any",
        choices=TARGET_NAMES,
        help="hardware preset of forms, or a runtime probed here (its integer-kernel forms)",
    )


def add_latency_arguments(parser: argparse.ArgumentParser) -> None:
    """``--latency-table`` and ``--latency-ms`` (the ``latency`` objective's table, a budget)."""
    parser.add_argument(
        "--latency-table",
        help="a latency table (eqsearch latency build) for the latency objective and budget "
        "(default: the one beside the checkpoint)",
    )
    parser.add_argument(
        "--latency-ms", type=finite_float, help="budget: predicted ms per inference (the table's)"
    )


def add_search_output_arguments(parser: argparse.ArgumentParser, scoring: str) -> None:
    """The options closing both commands: ``--out``/``--force`` of the front's files,
    ``--log``, how the supernet scores subnets (``scoring``: when it does) and the data."""
    add = parser.add_argument
    add("--out", help="directory of pareto.{json,csv,png} (default: the checkpoint's)")
    add_force_argument(parser, "pareto.{json,csv,png}")
    add(
        "--log",
        metavar="BACKENDS",
        help="where the front also goes, into --out: jsonl (front_log.jsonl), tensorboard, "
        "mlflow, comma-separated (default: its files only)",
    )
    add("--device", default="auto", help=f"{scoring}: {DEVICE_HELP}")
    add_image_count_arguments(
        parser,
        f"{scoring}: held-out training images that score subnets (default: the checkpoint's "
        "holdout)",
    )
    add_data_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(field_flags=FIELD_FLAGS)


def search_request(args: argparse.Namespace, own: tuple[str, ...], **fields: Any) -> SearchRequest:
    """The request of the options both commands share, the command's ``own`` options (fields
    under the same name) and other ``fields``."""
    from eqsearch.app.search_request import SearchRequest

    trust_named_factories(args)
    given = {name: getattr(args, name) for name in REQUEST_OPTIONS + own}
    return SearchRequest(**{**given, "log": args.log or (), **fields})


def print_outcome(console: Console, outcome: SearchOutcome, heading: str) -> None:
    """The front's table under ``heading``, the refinement rounds and measurements, the
    files written."""
    from rich.table import Table

    from eqsearch.app.console import front_table, print_frame

    print_frame(console, front_table(outcome.front), heading)
    if outcome.rounds:
        table = Table(title="refinement rounds")
        for column in ("search", "fitted on", "predicted front", "measured", "Kendall τ"):
            table.add_column(column, justify="right")
        for entry in outcome.rounds:
            tau = "-" if entry.kendall_tau is None else f"{entry.kendall_tau:.2f}"
            cells = (entry.index, entry.samples, entry.front_size, entry.measured)
            table.add_row(*(str(cell) for cell in cells), tau)
        console.print(table)
    if outcome.tau is not None:
        console.print(
            f"predicted vs measured accuracy of the verified configs: Kendall τ {outcome.tau:.2f}"
        )
    elif outcome.measured is not None and (outcome.rounds or "evaluated" in outcome.front.info):
        console.print(f"{outcome.measured} configs measured on the supernet")
    console.print("wrote " + ", ".join(str(path) for path in outcome.paths))
