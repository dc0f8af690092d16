"""The ``eqsearch`` command line: thin commands over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Parser,
    UsageError,
)
from eqsearch.app.console import make_console
from eqsearch.errors import InputError
from eqsearch.factories import (
    parse_reference,
    trust_factories,
    trust_scope,
)
from eqsearch.launcher import quiet_native_logs

if TYPE_CHECKING:
    pass

DEBUG_VARIABLE = "EQSEARCH_DEBUG"
TRUST_FLAG = "--trust-model"
TRUST_DATASET_FLAG = "--trust-dataset"

OPENMP_WAIT_VARIABLE = "OMP_WAIT_POLICY"

# Modules of eqsearch/app/commands/ with a `register(commands)` function, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",
    "search",
    "strategies",
    "export",
    "sample",
    "predictors",
    "study",
    "runtime",
    "latency",
    "inspect",
)

# -- commands ------------------------------------------------------------------------------


def _cmd_models(args: argparse.Namespace) -> int:
    from supernet.networks.models import MODELS, plugin_models
    from supernet.quantizers import QUANTIZERS

    table = Table(title="Registered models")
    for column in ("name", "default image size", "description"):
        table.add_column(column)
    for entry in MODELS.values():
        table.add_row(entry.name, str(entry.image_size), entry.description)
    for name, reference in sorted(plugin_models().items()):
        table.add_row(name, "", f"installed package: {reference}")
    console = make_console()
    console.print(table)
    console.print(f"quantizers: {', '.join(sorted(QUANTIZERS))}")
    console.print("any other model: --model package.module:factory (see the README)")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


def build_parser(*, study_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser of every subcommand.

    ``study_options=False`` leaves out the options of the studies, whose modules import
    torch: ``eqsearch --help`` and every other command then parse without it.
    """
    from eqsearch import __version__

    parser = Parser(
        prog="eqsearch",
        description="Elastic quantization supernets and NSGA-II mixed-precision search.",
    )
    parser.add_argument("--version", action="version", version=f"eqsearch {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"print the traceback of an unexpected failure (or set {DEBUG_VARIABLE}=1)",
    )
    parser.add_argument(
        TRUST_FLAG,
        action="append",
        metavar="MODULE:FUNCTION",
        help="let checkpoints and config files name this model factory (code they name is "
        "never run otherwise); taken anywhere on the line, repeatable",
    )
    parser.add_argument(
        TRUST_DATASET_FLAG,
        action="append",
        metavar="MODULE:FUNCTION",
        help="the same for a dataset factory",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    models = commands.add_parser("models", help="list registered models and quantizers")
    models.set_defaults(handler=_cmd_models)

    # Command groups that live in their own modules; each adds its subparsers.
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"eqsearch.app.commands.{module_name}")
        if module_name == "study":
            module.register(commands, with_options=study_options)
        else:
            module.register(commands)
    return parser


def prefer_passive_openmp(load: float | None = None, cores: int | None = None) -> None:
    """On a busy machine, let torch's idle OpenMP threads sleep at once instead of spinning,
    unless the user chose a policy (``OMP_WAIT_POLICY``); it takes effect for torch imported
    after it.

    libgomp spins up to 300,000 rounds at every barrier before it sleeps. On a machine whose
    cores other processes share, a spinning thread holds the core its partner waits for: a
    LeNet-5 sandwich step on 2 threads took 240 ms instead of 100 ms at load 6 on 2 cores
    (``benchmarks/openmp_wait.py``; the demo's training 745 s instead of 131 s). On a quiet
    machine spinning is the faster policy (a ResNet-20 W4/A4 step 181 ms spinning, 242 ms
    passive), so the policy follows the load: passive only when the one-minute load average
    (``load``) reaches the cores this process may use (``cores``). Neither changes a result:
    the work is divided the same way.
    """
    if OPENMP_WAIT_VARIABLE in os.environ:
        return
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if load >= cores:
        os.environ[OPENMP_WAIT_VARIABLE] = "PASSIVE"


def print_safely() -> None:
    """Let standard output and error print any path: characters the terminal's encoding
    lacks (``PYTHONIOENCODING=ascii``, a C locale) are written as ``\\xf6`` escapes, where
    Python would fail after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    print_safely()
    prefer_passive_openmp()  # before any command imports torch
    arguments = list(sys.argv[1:] if argv is None else argv)
    # --debug is taken anywhere on the line, before or after the command
    debug = "--debug" in arguments or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    arguments = [argument for argument in arguments if argument != "--debug"]
    quiet_native_logs(debug)  # before any command imports torch
    parser: argparse.ArgumentParser | None = None
    args: argparse.Namespace | None = None
    try:
        with trust_scope():
            arguments = _take_trusted_factories(arguments)
            parser = build_parser(study_options="study" in arguments)
            args = parser.parse_args(arguments)
            args.debug = debug
            handler: Command = args.handler
            return handler(args)
    except (UsageError, InputError) as error:
        # bad input; any other ValueError is a bug and falls through to the last handler
        print(f"error: {_one_line(_in_flags(error, parser, args))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        # a full disk, a vanished directory, an I/O fault: the files finished before it
        # are intact (every write is atomic); say what failed, no traceback
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:
        if debug:
            traceback.print_exc()
        else:
            print(
                f"error: unexpected {type(error).__name__}: {_one_line(error)[:300]} "
                f"(this is a bug; --debug or {DEBUG_VARIABLE}=1 shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_FAILURE


def _take_trusted_factories(arguments: list[str]) -> list[str]:
    """Trust every ``--trust-model REF`` and ``--trust-dataset REF`` on the line (before or
    after the command) and return the line without them.

    Raises:
        UsageError: the flag without a reference, or a malformed reference.
    """
    rest: list[str] = []
    trusted: list[str] = []
    items = iter(arguments)
    for argument in items:
        if argument == "--":
            rest += [argument, *items]
            break
        flag = argument.split("=", 1)[0]
        if flag not in (TRUST_FLAG, TRUST_DATASET_FLAG):
            rest.append(argument)
            continue
        what = "model factory" if flag == TRUST_FLAG else "dataset factory"
        if argument == flag:
            value = next(items, None)
            if value is None or value.startswith("-"):
                raise UsageError(f"{flag} takes a {what}: package.module:function")
        else:
            value = argument.split("=", 1)[1]
        try:
            trusted.append(parse_reference(value, what=what).text)
        except InputError as error:
            raise UsageError(f"{flag}: {error}") from None
    trust_factories(trusted)
    return rest


def _in_flags(
    error: InputError, parser: argparse.ArgumentParser | None, args: argparse.Namespace | None
) -> str:
    """The error's message with the field it concerns called by the command's flag (the
    option whose destination is the field, or the command's ``field_flags`` default)."""
    if error.field is None or parser is None or args is None:
        return str(error)
    flags: dict[str, str] = dict(getattr(args, "field_flags", None) or {})
    command = _command_parser(parser, args)
    for action in command._actions if command is not None else ():
        long_options = [option for option in action.option_strings if option.startswith("--")]
        if long_options and action.help != argparse.SUPPRESS:
            flags.setdefault(action.dest, long_options[0])
    flag = flags.get(error.field)
    return error.naming(flag) if flag is not None else str(error)


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser | None:
    """The (sub-)command parser whose handler ``args`` holds."""
    handler = getattr(args, "handler", None)
    pending = [parser]
    while pending:
        current = pending.pop()
        if current is not parser and current._defaults.get("handler") is handler:
            return current
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return None


def _one_line(error: BaseException | str) -> str:
    """The error's message on one line (multi-line messages of libraries are joined)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


if __name__ == "__main__":
    raise SystemExit(main())
