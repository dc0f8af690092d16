"""``python -m studies.<name>``: the same run as ``eqsearch study <name>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from eqsearch.files import check_outputs
from eqsearch.locks import hold_directory

T = TypeVar("T")


def study_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Run ``eqsearch study <name>`` with ``argv`` (default: this process's arguments).

    Returns:
        The command's exit status.
    """
    from eqsearch.app.cli import main as eqsearch_main

    return eqsearch_main(["study", name, *(sys.argv[1:] if argv is None else argv)])


def study_entry(name: str) -> Callable[..., int]:
    """The ``main(argv=None) -> int`` of ``python -m studies.<module>``: the study that
    ``eqsearch study <name>`` runs, with the same flags and errors."""

    def main(argv: Sequence[str] | None = None) -> int:
        return study_main(name, argv)

    return main


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    seed: int | None,
    seed_help: str,
    outputs: str,
    device: str | None = "cpu",
    device_help: str | None = "torch device of the measurements",
) -> None:
    """The flags every study ends with: ``--seed`` (default ``seed``), ``--device`` (where
    ``device_help`` is given), ``--force`` (replacing ``outputs``) and ``--no-progress``."""
    from eqsearch.app.commands.common import add_force_argument, add_progress_argument, seed_int

    parser.add_argument("--seed", type=seed_int, default=seed, help=seed_help)
    if device_help is not None:
        parser.add_argument("--device", default=device, help=device_help)
    add_force_argument(parser, outputs)
    add_progress_argument(parser)


def run_in_directory(
    out: str | Path, outputs: Mapping[str, str], *, force: bool, run: Callable[[], T]
) -> T:
    """``run()`` with the study directory ``out`` locked, after checking the report files
    ``outputs`` (name → kind) it will write there: files of another kind at their names are
    refused, and replaced only with ``force`` (before any work)."""
    check_outputs(out, dict(outputs), force=force)
    with hold_directory(out, what="the study directory"):
        return run()


def report_study(markdown: str, *written: str | Path | None) -> int:
    """Print a study's report and the files it wrote (None: a file not written); the
    command's exit status (0)."""
    names = [str(path) for path in written if path is not None]
    listed = names[0] if len(names) < 2 else f"{', '.join(names[:-1])} and {names[-1]}"
    print(markdown)
    print(f"wrote {listed}")
    return 0
