"""What every subcommand shares: the usage error, exit codes, console, tables, argument parsing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace, SubnetConfig

Command = Callable[[argparse.Namespace], int]
Subcommands = "argparse._SubParsersAction[Any]"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad user input: reported as one ``error: ...`` line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`UsageError` (exit 2, one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def make_console() -> Console:
    """The console commands print to."""
    # Piped output (logs, tests) gets wide tables instead of truncated column names.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def int_list(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` or ``"2-8"`` → a tuple of ints."""
    values: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                low, high = part.split("-", 1)
                values.extend(range(int(low), int(high) + 1))
            else:
                values.append(int(part))
    except ValueError:
        raise UsageError(f"expected bit widths like '2,4,8' or '2-8'; got {text!r}") from None
    return tuple(values)


def bits_pair(text: str) -> tuple[int, int]:
    """``"4/4"`` or ``"4"`` → (weight bits, activation bits)."""
    parts = text.split("/")
    try:
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
        return int(text), int(text)
    except ValueError:
        raise UsageError(f"expected W/A bits like '4/4'; got {text!r}") from None


def load_config_argument(reference: str, space: ElasticSpace) -> SubnetConfig:
    """A config from ``cfg.json`` or ``pareto.json#3``, validated against ``space``."""
    from eqsearch.space import SubnetConfig

    path, _, index = reference.partition("#")
    try:
        text = Path(path).read_text()
    except OSError:
        raise UsageError(f"config file not found: {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not JSON: {error}") from None
    if index:
        configs = data.get("configs") if isinstance(data, dict) else None
        if not isinstance(configs, list):
            raise UsageError(f"{path} holds no list of configs to index with #{index}")
        try:
            item = configs[int(index)]
        except (ValueError, IndexError):
            raise UsageError(f"{path} has {len(configs)} configs; #{index} is not one") from None
        config = SubnetConfig.from_dict(item.get("config", item))
    else:
        config = SubnetConfig.from_dict(data)
    return space.validate(config)


def format_cell(value: object) -> str:
    """A table cell: floats with two decimals, large ones in scientific notation."""
    if isinstance(value, float):
        return f"{value:.3e}" if abs(value) >= 1e5 else f"{value:.2f}"
    return str(value)


def print_frame(console: Console, frame: Any, title: str) -> None:
    """Print a pandas DataFrame as a rich table."""
    table = Table(title=title)
    table.add_column("")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        cells = [format_cell(value) for value in row.tolist()]
        table.add_row(str(index), *cells)
    console.print(table)
