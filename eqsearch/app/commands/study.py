"""``eqsearch study``: the experiments installed as ``eqsearch.studies`` entry points."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from eqsearch.app.commands.common import add_command_group

GROUP = "eqsearch.studies"
"""Entry-point group of the studies: name → a module with ``add_arguments(parser)`` and
``run_from_args(args) -> int`` (eqsearch's own in ``studies/``; any installed package may add
one)."""


def installed_studies() -> dict[str, EntryPoint]:
    """The studies installed as entry points, by name (the application layer names none)."""
    return {point.name: point for point in sorted(entry_points(group=GROUP), key=_order)}


def _order(point: EntryPoint) -> tuple[bool, str]:
    return (not point.value.startswith("studies."), point.name)


def _summary(module_name: str) -> str:
    """The first sentence of a study module's docstring, read without importing it (a study
    imports torch; ``--help`` should not)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return module_name
    with open(spec.origin, encoding="utf-8") as source:
        docstring = ast.get_docstring(ast.parse(source.read())) or module_name
    first = " ".join(docstring.split("\n\n")[0].split())
    return first.removeprefix("Study: ").rstrip(".")


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(installed_studies()[args.study].value)
    result: int = module.run_from_args(args)
    return result


def register(commands: argparse._SubParsersAction[Any], *, with_options: bool = True) -> None:
    """Add ``study`` and one sub-command per installed study.

    The options live beside each study (so that ``python -m studies.X`` and ``eqsearch study
    X`` accept the same ones), and importing a study imports torch: ``with_options=False``
    adds the sub-commands without them, for a command line that runs no study.
    """
    studies_found = installed_studies()
    studies = add_command_group(
        commands,
        "study",
        f"experiments: {', '.join(studies_found)}",
        dest="study",
        metavar="STUDY",
    )
    for name, point in studies_found.items():
        parser = studies.add_parser(name, help=_summary(point.value))
        if with_options:
            importlib.import_module(point.value).add_arguments(parser)
        parser.set_defaults(handler=_run)
