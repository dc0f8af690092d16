"""What every subcommand shares: the usage error, exit codes, console, tables, argument parsing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from eqsearch.errors import InputError
from eqsearch.factories import is_reference, locate_module, parse_reference, trust_factories
from eqsearch.numbers import NumberError, loads_json, parse_integer, parse_number

Command = Callable[[argparse.Namespace], int]
Subcommands = "argparse._SubParsersAction[Any]"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(InputError):
    """Bad command-line input: reported as one ``error: ...`` line with exit code 2."""


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, where it has one worth showing: not None, not
    an off switch, and not already said in the help text."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`UsageError` (exit 2, one line) and
    whose ``--help`` shows the defaults (:class:`DefaultsFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def add_command_group(
    commands: Any, name: str, help: str, *, dest: str = "action", metavar: str = "ACTION"
) -> Any:
    """Add the command ``name`` whose sub-commands, one of them required, go to ``dest``;
    returns the sub-command parsers' ``add_parser`` holder."""
    group = commands.add_parser(name, help=help)
    actions = group.add_subparsers(dest=dest, metavar=metavar, parser_class=Parser)
    actions.required = True
    return actions


def _renamed(base: type[argparse.Action], new: str) -> type[argparse.Action]:
    """``base`` (an argparse action class) that first warns once that its option is ``new``."""

    class Renamed(base):  # type: ignore[valid-type,misc]
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            from eqsearch.errors import warn

            warn(f"{option} is now {new} here (the old name will be removed)")
            super().__call__(parser, namespace, values, option)

    return Renamed


def add_renamed_option(
    parser: argparse.ArgumentParser, old: str, new: str, *, dest: str, **kwargs: Any
) -> None:
    """Keep ``old``, the former name of option ``new`` (stored at ``dest``), as a hidden
    alias that warns once; ``kwargs`` are ``new``'s own (``type``, ``action``, ...)."""
    action = kwargs.pop("action", "store")
    base = parser._registry_get("action", action, action)
    parser.add_argument(
        old,
        dest=dest,
        action=_renamed(base, new),
        help=argparse.SUPPRESS,
        default=argparse.SUPPRESS,
        **kwargs,
    )


def add_image_count_arguments(parser: argparse.ArgumentParser, val_help: str) -> None:
    """``--calib-images N`` (BN re-calibration images; ``--bn-images`` is a hidden alias) and
    ``--val-images M`` (scoring images), EQ-Net's evaluation protocol on every command that
    scores subnets."""
    parser.add_argument(
        "--calib-images",
        dest="bn_images",
        type=positive_int,
        help="training images that re-estimate the BN statistics (default: the checkpoint's)",
    )
    add_renamed_option(parser, "--bn-images", "--calib-images", dest="bn_images", type=positive_int)
    parser.add_argument("--val-images", type=positive_int, help=val_help)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``, the same flag on every command that shows progress."""
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars or spinners (logs, CI)"
    )


def progress_printer(enabled: bool) -> Callable[[str], None]:
    """Where a long command's progress lines go: printed at once, or nowhere under
    ``--no-progress``."""

    def show(text: str) -> None:
        if enabled:
            print(text, flush=True)

    return show


DEVICE_HELP = "auto (default: CUDA when available), cpu, cuda or cuda:N"

MAX_SEED = 2**63 - 1
"""Largest seed (numpy and torch both take it)."""

MAX_BIT_WIDTHS = 64
"""Most bit widths a list such as ``--w-choices 2-8`` may name."""


def integer(text: str) -> int:
    """Any integer in plain digits (the command checks its range)."""
    try:
        return parse_integer(text)
    except NumberError as error:
        raise argparse.ArgumentTypeError(error.reason) from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts of images, subnets, ...)."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {value}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in 0..2^63-1."""
    try:
        value = parse_integer(text)
    except NumberError:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2**63-1; got {text}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2**63-1; got {text}")
    return value


def finite_float(text: str) -> float:
    """A finite number (not nan or inf) in plain digits."""
    try:
        return parse_number(text)
    except NumberError as error:
        raise argparse.ArgumentTypeError(error.reason) from None


def parse_option(text: str) -> tuple[str, Any]:
    """``--option KEY=VALUE`` → (key, value); the value is read as JSON where it parses
    (``4``, ``0.1``, ``true``) and kept as a string otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--option takes KEY=VALUE (e.g. max_depth=4); got {text!r}")
    try:
        parsed: Any = loads_json(value)
    except (json.JSONDecodeError, RecursionError):
        parsed = value
    except InputError as error:
        raise UsageError(f"--option {text}: {error}") from None
    return key.strip(), parsed


def int_list(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` or ``"2-8"`` → a tuple of ints."""
    values: list[int] = []
    for part in text.split(","):
        try:
            if "-" in part.strip()[1:]:
                low, high = part.split("-", 1)
                bits = range(parse_integer(low.strip()), parse_integer(high.strip()) + 1)
            else:
                bits = range(parse_integer(part.strip()), parse_integer(part.strip()) + 1)
        except NumberError:
            bits = range(0)
        if not bits or len(values) + len(bits) > MAX_BIT_WIDTHS:
            raise UsageError(f"expected bit widths like '2,4,8' or '2-8'; got {text!r}")
        values.extend(bits)
    return tuple(values)


def add_force_argument(parser: argparse.ArgumentParser, what: str = "output files") -> None:
    """The ``--force`` flag of a command that writes files (see ``check_output_file``)."""
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace existing {what} (never a file of another kind, such as a checkpoint)",
    )


def trust_named_factories(args: argparse.Namespace) -> None:
    """Trust the ``--model``/``--dataset`` factories named on the line (a file naming them
    later is then allowed); a missing module is named before torch is imported."""
    for name, what in ((getattr(args, "model", None), "model"), (args.dataset, "dataset")):
        if name is not None and is_reference(name):
            locate_module(parse_reference(name, what=f"{what} factory"))
            trust_factories([name])
