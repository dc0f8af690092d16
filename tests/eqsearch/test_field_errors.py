"""Errors that name a field: the library says the field, the command line says its flag."""

from __future__ import annotations

import argparse

import pytest

from eqsearch.app import cli
from eqsearch.app.commands.common import Parser
from eqsearch.errors import InputError


def test_message_names_the_field_and_a_caller_names_it_its_own_way() -> None:
    error = InputError("{field} must be at least 2; got 1", field="population")
    assert str(error) == "population must be at least 2; got 1"
    assert error.naming("--population") == "--population must be at least 2; got 1"
    assert error.field == "population"


def test_an_error_without_a_field_keeps_its_text() -> None:
    error = InputError("no {field} here")
    assert str(error) == "no {field} here"
    assert error.naming("--x") == "no {field} here"
    assert error.field is None


def _failing_command(field: str) -> cli.Command:
    def handler(args: argparse.Namespace) -> int:
        raise InputError("{field} is too large", field=field)

    return handler


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("bitops", "--bitops is too large"),  # the option whose destination is the field
        ("bitops_budget", "--bitops is too large"),  # the command's own map
        ("hidden", "hidden is too large"),  # a hidden alias is never named
        ("elsewhere", "elsewhere is too large"),  # no flag: the library's words
    ],
)
def test_the_command_line_names_the_flag_of_the_field(
    field: str, shown: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def build_parser(*, study_options: bool = True) -> argparse.ArgumentParser:
        parser = Parser(prog="eqsearch")
        commands = parser.add_subparsers(dest="command", parser_class=Parser)
        search = commands.add_parser("search")
        search.add_argument("--bitops", "-b")
        search.add_argument("--hidden", help=argparse.SUPPRESS)
        search.set_defaults(
            handler=_failing_command(field), field_flags={"bitops_budget": "--bitops"}
        )
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    assert cli.main(["search"]) == 2
    assert capsys.readouterr().err == f"error: {shown}\n"
