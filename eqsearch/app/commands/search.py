"""``eqsearch nsga`` (the mixed-precision search) and ``eqsearch demo`` (the whole pipeline)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eqsearch.app.commands.common import (
    EXIT_OK,
    add_force_argument,
    add_progress_argument,
    finite_float,
    non_negative_int,
    positive_int,
    seed_int,
)
from eqsearch.app.console import make_console

VERIFY_HELP = "measure K front configs on the supernet"


def register(commands: Any) -> None:
    """Add the ``nsga`` and ``demo`` subcommands."""
    from eqsearch.app.commands.refine import add_refine_arguments
    from eqsearch.app.commands.searching import (
        FIELD_FLAGS,
        add_bits_budget_arguments,
        add_latency_arguments,
        add_objective_arguments,
        add_search_output_arguments,
    )
    from eqsearch.engines import ENGINES

    nsga = commands.add_parser(
        "nsga", help="NSGA-II search for mixed-precision configs on the Pareto front"
    )
    add = nsga.add_argument
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add_bits_budget_arguments(nsga)
    add("--bitops", type=finite_float, help="budget: BitOPs per image")
    add("--size", type=finite_float, help="budget: packed model size in bytes")
    add("--macs", type=finite_float, help="budget: MACs per image of a joint space's architecture")
    add_latency_arguments(nsga)
    add_objective_arguments(nsga)
    add("--forms-per-layer", action="store_true", help="with --target any: a form per layer")
    add("--engine", default="pymoo", choices=ENGINES, help="NSGA-II implementation (default pymoo)")
    add("--predictor", help="a fitted predictor (default: the one saved beside the checkpoint)")
    add(
        "--oracle",
        default="predictor",
        choices=("predictor", "supernet"),
        help="where accuracy comes from: the predictor (default) or the supernet itself",
    )
    for flag, kind, default, text in (
        ("--population", positive_int, 100, "individuals per generation"),
        ("--generations", non_negative_int, 500, "generations after the first"),
        ("--seed", seed_int, 0, "the search is a function of it"),
    ):
        add(flag, type=kind, default=default, help=text)
    add("--verify", type=non_negative_int, default=0, metavar="K", help=VERIFY_HELP)
    add_refine_arguments(nsga)
    add_search_output_arguments(nsga, "for --oracle supernet, --verify and --refine")
    nsga.set_defaults(field_flags={**FIELD_FLAGS, "solver": "--engine"})
    nsga.set_defaults(handler=_cmd_nsga)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on embedded MNIST digits (a few minutes on a CPU)"
    )
    demo.add_argument("--out", default="eqsearch-demo", help="directory of every demo file")
    demo.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests)")
    add_force_argument(demo, "files at the demo's names in a directory that is not a demo's")
    add_progress_argument(demo)
    demo.add_argument("--seed", type=seed_int, default=0, help="seeds every stage")
    demo.add_argument(
        "--model",
        choices=("lenet5", "oqa_mbv3_tiny"),
        default="lenet5",
        help="lenet5 on MNIST-5k (bits and forms), or oqa_mbv3_tiny on the 8×8 digits (the "
        "joint architecture × bits space under a BitOPs budget)",
    )
    demo.set_defaults(handler=_cmd_demo)


# -- nsga ----------------------------------------------------------------------------------


NSGA_OPTIONS: tuple[str, ...] = ("bitops", "size", "macs", "forms_per_layer", "population")
NSGA_OPTIONS += ("generations", "verify", "refine", "samples")
"""``nsga``'s own options that are :class:`~eqsearch.app.search_request.SearchRequest` fields."""


def _cmd_nsga(args: argparse.Namespace) -> int:
    from eqsearch.app.commands.searching import print_outcome, search_request
    from eqsearch.app.search import search_checkpoint

    request = search_request(args, NSGA_OPTIONS, solver=args.engine)
    console = make_console()
    outcome = search_checkpoint(request, console=console, progress=not args.no_progress)
    kind = "measured front" if outcome.rounds else "Pareto front"
    print_outcome(console, outcome, f"{kind}: {len(outcome.front)} configs ({outcome.title})")
    return EXIT_OK


# -- demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from eqsearch.app.demo import run_demo
    from eqsearch.app.demo_settings import DemoSettings

    if args.model == "lenet5":
        settings = DemoSettings.quick(args.seed) if args.quick else DemoSettings(seed=args.seed)
    else:
        settings = DemoSettings.joint(args.seed, quick=args.quick)
    run_demo(
        Path(args.out),
        settings,
        console=make_console(),
        progress=not args.no_progress,
        force=args.force,
    )
    return EXIT_OK
