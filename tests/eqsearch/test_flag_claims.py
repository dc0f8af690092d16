"""What docs/cli.md says of every command's flags holds for the parsers: `--force` and
`--no-progress` wherever a command writes, defaults shown in `--help`."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from eqsearch.app.cli import build_parser

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
READ_ONLY = {"models", "latency show", "inspect"}
"""Commands that write nothing."""


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield " ".join(prefix), parser
        return
    for name, child in subparsers[0].choices.items():
        yield from _commands(child, (*prefix, name))


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    return dict(_commands(build_parser(study_options=True)))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_every_command_that_writes_takes_force_and_no_progress(commands) -> None:
    assert "Every command that writes takes `--force`" in CLI_DOC.read_text(encoding="utf-8")
    assert {"study latency", "train", "demo", "nsga"} <= set(commands)
    lacking = {
        name: sorted({"--force", "--no-progress"} - _options(parser))
        for name, parser in commands.items()
        if name not in READ_ONLY
    }
    assert {name: missing for name, missing in lacking.items() if missing} == {}
    assert all("--out" not in _options(commands[name]) for name in READ_ONLY)


def test_help_shows_defaults_once_and_never_none(commands) -> None:
    nsga = commands["nsga"].format_help()
    assert re.search(r"individuals per generation \(default:\s+100\)", nsga)
    assert re.search(r"\(default:\s+pymoo\)", nsga) is None  # its help says so already
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "(default: [])" not in text, name


def _help_entries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's help entry, whitespace collapsed, by its first option string."""
    entries = re.split(r"\n  (?=-)", parser.format_help().split("options:", 1)[1])
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries if entry}


def test_train_help_shows_each_train_config_default_as_the_flag_takes_it(commands) -> None:
    from eqsearch.app.commands.train import _TRAIN_FLAGS, _train_config
    from supernet.training.config import TrainConfig

    parser = commands["train"]
    entries = _help_entries(parser)
    default = TrainConfig()
    shown = 0
    for action in parser._actions:
        field = _TRAIN_FLAGS.get(action.dest)
        if field is None or action.help is argparse.SUPPRESS:
            continue
        assert action.default is None, action.dest  # a config file fills what no flag gives
        value = getattr(default, field)
        entry = entries[action.option_strings[0]]
        if value is None or value is False:  # absent, or an off switch: the help says so
            assert "(default: None)" not in entry and "(default: False)" not in entry
            continue
        found = re.search(r"\(default: ([^()]+)\)$", entry)
        assert found is not None, entry
        text = found[1]
        shown += 1
        if value is True:
            assert text == "on", entry
            continue
        args = parser.parse_args(["--out", "run", action.option_strings[0], text])
        assert getattr(_train_config(args), field) == value, entry
    assert shown >= 30
