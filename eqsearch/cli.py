"""The ``eqsearch`` command line: thin commands over the Python API."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

Command = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad user input: reported as one ``error: ...`` line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _console() -> Console:
    return Console(highlight=False)


# -- commands ------------------------------------------------------------------------------


def _cmd_models(args: argparse.Namespace) -> int:
    from supernet.models import MODELS
    from supernet.quantizers import QUANTIZERS

    table = Table(title="Registered models")
    for column in ("name", "default image size", "description"):
        table.add_column(column)
    for entry in MODELS.values():
        table.add_row(entry.name, str(entry.image_size), entry.description)
    console = _console()
    console.print(table)
    console.print(f"quantizers: {', '.join(sorted(QUANTIZERS))}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    raise UsageError(
        "the end-to-end demo is not yet available in this version; "
        "see the README for the commands that are"
    )


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="eqsearch",
        description="Elastic quantization supernets and NSGA-II mixed-precision search.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    models = commands.add_parser("models", help="list registered models and quantizers")
    models.set_defaults(handler=_cmd_models)

    demo = commands.add_parser("demo", help="the whole pipeline on embedded MNIST digits")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Command = args.handler
        return handler(args)
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
