"""``python -m studies.<name>``: the same run as ``eqsearch study <name>``."""

from __future__ import annotations

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


def run_in_directory(
    out: str | Path, outputs: Mapping[str, str], *, force: bool, run: Callable[[], T]
) -> T:
    """``run()`` with the study directory ``out`` locked, after checking the report files
    ``outputs`` (name → kind) it will write there: files of another kind at their names are
    refused, and replaced only with ``force`` (before any work)."""
    check_outputs(out, dict(outputs), force=force)
    with hold_directory(out, what="the study directory"):
        return run()
