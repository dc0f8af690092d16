"""``eqsearch strategy``: what users pick instead of NSGA-II (ILP, greedy, uniform, random)."""

from __future__ import annotations

import argparse
from typing import Any

from eqsearch.app.commands.common import EXIT_OK, positive_int, seed_int
from eqsearch.app.console import make_console


def register(commands: Any) -> None:
    """Add the ``strategy`` subcommand."""
    from eqsearch.app.commands import searching
    from eqsearch.strategies import STRATEGIES
    from eqsearch.strategies.additive import SWEEPS

    parser = commands.add_parser(
        "strategy",
        help="sensitivity ILP (HAWQ-V3), greedy, uniform or random configs as a Pareto front",
    )
    add = parser.add_argument
    add("name", choices=STRATEGIES, help="the strategy")
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add(
        "--sensitivity",
        choices=("hessian", "measured"),
        help="ilp and greedy: HAWQ's Hessian trace × quantization error (default), or the "
        "measured accuracy drop with one layer lowered; cached beside the checkpoint",
    )
    searching.add_bits_budget_arguments(parser)
    searching.add_objective_arguments(parser)
    searching.add_latency_arguments(parser)
    add(
        "--sweep",
        choices=SWEEPS,
        help="ilp and greedy: the cost swept (default: the cost objective's, e.g. bitops)",
    )
    add(
        "--budgets",
        type=positive_int,
        help="ilp: budget levels of the sweep (default 20); greedy: its pick at this many "
        "levels (default: its whole curve)",
    )
    add("--count", type=positive_int, help="random: configs drawn (default 100)")
    add("--seed", type=seed_int, default=0, help="random: seed of the draw; hessian: of the probes")
    for flag, default, text in (
        ("--images", 256, "hessian sensitivity: scoring images the traces use (default 256)"),
        ("--probes", 16, "hessian sensitivity: Hutchinson vectors per batch of 64 images"),
    ):
        add(flag, type=positive_int, default=default, help=text)
    add(
        "--oracle",
        default="supernet",
        choices=("supernet", "predictor"),
        help="where the front's accuracy comes from: measured on the supernet (default) or "
        "the predictor beside the checkpoint",
    )
    add("--predictor", help="with --oracle predictor: a fitted predictor file")
    searching.add_search_output_arguments(parser, "the supernet oracle and the sensitivities")
    parser.set_defaults(handler=_cmd_strategy)


def _cmd_strategy(args: argparse.Namespace) -> int:
    from eqsearch.app.commands.searching import print_outcome, search_request
    from eqsearch.app.search import search_checkpoint

    own = ("sensitivity", "sweep", "budgets", "count", "images", "probes")
    request = search_request(args, own, solver=args.name)
    console = make_console()
    outcome = search_checkpoint(request, console=console, progress=not args.no_progress)
    print_outcome(console, outcome, f"{args.name}: {len(outcome.front)} configs on the front")
    return EXIT_OK
