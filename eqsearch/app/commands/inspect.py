"""``eqsearch inspect``: what a checkpoint, a Pareto front or an exported ONNX model holds."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import EXIT_OK
from eqsearch.app.console import make_console

if TYPE_CHECKING:
    from eqsearch.app.inspection import Inspection


def register(commands: Any) -> None:
    """Add the ``inspect`` subcommand."""
    parser = commands.add_parser(
        "inspect",
        help="what a supernet.pt, pareto.json or model.onnx holds (nothing in it is run)",
    )
    parser.add_argument("file", help="a checkpoint, a pareto.json or an exported .onnx model")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(handler=_cmd_inspect)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_text(item)}" for key, item in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) or "-"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from eqsearch.app.inspection import inspect_file

    inspection = inspect_file(args.file)
    if args.json:
        print(json.dumps(inspection.to_dict(), indent=2))
        return EXIT_OK
    console = make_console()
    console.print(_summary_table(inspection))
    if inspection.rows:
        console.print(_rows_table(inspection))
    return EXIT_OK


def _summary_table(inspection: Inspection) -> Table:
    """The file's facts, one a row (the build and the ONNX bits are shown elsewhere)."""
    table = Table(title=f"{inspection.path}: {inspection.kind}")
    table.add_column("")
    table.add_column("value")
    for key, value in inspection.summary.items():
        if key == "metadata":
            for name, item in value.items():
                # the bits are a table of their own below; the config is the same facts
                if name not in ("eqsearch.bits_per_layer", "eqsearch.config"):
                    table.add_row(name, _text(item))
        elif key != "build":
            table.add_row(key.replace("_", " "), _text(value))
    return table


_ROW_TITLES = {
    "checkpoint": "training log",
    "pareto": "configs (spread over the front)",
    "onnx": "bits per layer",
}


def _rows_table(inspection: Inspection) -> Table:
    """The file's small table: a checkpoint's log, a front's configs, an ONNX model's bits."""
    rows = Table(title=_ROW_TITLES[inspection.kind])
    columns = list(dict.fromkeys(key for row in inspection.rows for key in row))
    for column in columns:
        rows.add_column(column, justify="right")
    for row in inspection.rows:
        rows.add_row(*(_text(row.get(column)) for column in columns))
    return rows
