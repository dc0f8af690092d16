"""What the commands print: the console, status lines, tables of fronts and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from eqsearch.pareto import ParetoFront


def status(console: Console, text: str, enabled: bool) -> AbstractContextManager[Any]:
    """A spinner with ``text`` while a block runs, or nothing when ``enabled`` is False."""
    return console.status(text) if enabled else nullcontext()


def make_console() -> Console:
    """The console commands print to."""
    # Piped output (logs, tests) gets wide tables instead of truncated column names.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


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


TABLE_COLUMNS = ("w_bits", "a_bits", "w_comp", "a_comp", "bitops", "size_bytes", "form")


def _progress(console: Console) -> Any:
    """A rich progress display that stays on screen: description, bar, done of total, time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@contextmanager
def generation_bar(
    console: Console, description: str, total: int, enabled: bool
) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over generations; yields the ``progress`` callback of ``nsga2``."""
    if not enabled or total == 0:
        yield None
        return
    with _progress(console) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, all_generations: int) -> None:
            bar.update(task, completed=done, total=all_generations)

        yield advance


def front_table(front: ParetoFront) -> Any:
    """The columns of the front worth printing."""
    frame = front.to_frame()
    columns = [*front.objective_names]
    columns += [c for c in TABLE_COLUMNS if c in frame.columns and c not in columns]
    for name in ("latency_ms", "measured_accuracy", "measured_latency_ms"):
        if name in frame.columns and name not in columns:
            columns.append(name)
    return frame[columns]


@contextmanager
def phase_bar(
    console: Console, enabled: bool
) -> Iterator[Callable[[str], Callable[[int, int], None]] | None]:
    """A rich progress display with one bar per phase; yields ``bar(phase)`` callbacks."""
    if not enabled:
        yield None
        return
    with _progress(console) as progress:
        tasks: dict[str, Any] = {}

        def bar(phase: str) -> Callable[[int, int], None]:
            def advance(done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=total)
                progress.update(tasks[phase], completed=done, total=total)

            return advance

        yield bar
