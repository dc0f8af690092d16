"""``eqsearch fit-predictor``: CQAP predictors fitted on samples files."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_OK,
    add_progress_argument,
    finite_float,
    parse_option,
    seed_int,
)
from eqsearch.app.commands.output_options import add_output_file_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, status


def register(commands: Any) -> None:
    """Add the ``fit-predictor`` subcommand."""
    fit = commands.add_parser(
        "fit-predictor", help="fit an accuracy predictor on a samples file; held-out metrics"
    )
    add = fit.add_argument
    add("--samples", required=True, help="a samples CSV written by eqsearch sample")
    add("--backend", default="mlp", help="mlp (default), xgboost or ridge")
    add(
        "--test-fraction",
        type=finite_float,
        default=0.2,
        help="fraction of the samples held out for the metrics (default 0.2)",
    )
    add("--seed", type=seed_int, default=0, help="seeds the split and the fit")
    add("--option", action="append", default=[], metavar="KEY=VALUE", help="backend option")
    add("--supernet", help="read the space from this checkpoint (default: the samples' sidecar)")
    add_output_file_arguments(
        fit, "predictor file (default: predictor-<backend>.<ext> beside the samples)"
    )
    add_progress_argument(fit)
    fit.set_defaults(handler=_cmd_fit_predictor)


def _cmd_fit_predictor(args: argparse.Namespace) -> int:
    from eqsearch.app.predictor_fitting import FitRequest, fit_predictor_file
    from predictors.fitting import metrics_path

    options = dict(parse_option(text) for text in args.option)
    request = request_from(args, FitRequest, options=options)
    console = make_console()
    result = fit_predictor_file(
        request, spinner=lambda text: status(console, text, not args.no_progress)
    )
    table = Table(title=f"{args.backend} predictor: {result.n_test} held-out subnets")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    table.add_row("fit seconds", f"{result.fit_seconds:.2f}")
    console.print(table)
    console.print(
        f"trained on {result.n_train} subnets; saved {result.path} and "
        f"{metrics_path(result.path).name}"
    )
    return EXIT_OK
