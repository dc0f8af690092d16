"""``python -m studies.<name>``: the same run as ``eqsearch study <name>``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def study_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Run ``eqsearch study <name>`` with ``argv`` (default: this process's arguments).

    Returns:
        The command's exit status.
    """
    from eqsearch.app.cli import main as eqsearch_main

    return eqsearch_main(["study", name, *(sys.argv[1:] if argv is None else argv)])
