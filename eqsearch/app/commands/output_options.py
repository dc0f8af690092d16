"""``--output FILE`` (``--out``, its old name, warns) and ``--force``: a single output file."""

from __future__ import annotations

import argparse

from eqsearch.app.commands.common import add_force_argument, add_renamed_option


def add_output_file_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """The options of a command that writes one file: ``--output`` (``help`` says which and
    its default; ``--out``, its former name, a hidden alias that warns) and ``--force``.

    ``--output`` is never ``required=True`` where a command needs it: argparse would then
    refuse the alias, which stores there too; the command's request names it instead.
    """
    parser.add_argument("--output", metavar="FILE", help=help)
    add_renamed_option(parser, "--out", "--output", dest="output")
    add_force_argument(parser, "--output file")
