"""``eqsearch fit-predictor``: CQAP predictors fitted on samples files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_progress_argument,
    finite_float,
    parse_option,
    seed_int,
)
from eqsearch.app.console import make_console, status

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace


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
    add("--out", help="predictor file (default: predictor-<backend>.<ext> beside the samples)")
    add_force_argument(fit, "predictor file")
    add_progress_argument(fit)
    fit.set_defaults(handler=_cmd_fit_predictor)


def _samples_space(args: argparse.Namespace) -> ElasticSpace:
    from predictors.samples.sidecars import read_samples_space

    checkpoint = Path(args.supernet) if args.supernet else None
    if checkpoint is None:
        stored = read_samples_space(args.samples)
        if stored is not None:
            return stored
        checkpoint = Path(args.samples).parent / "supernet.pt"
        if not checkpoint.is_file():
            raise UsageError(
                f"no space file beside {args.samples} and no supernet.pt there; give --supernet"
            )
    from eqsearch.space import ElasticSpace
    from supernet.files.checkpoint import load_checkpoint

    return ElasticSpace.from_dict(load_checkpoint(checkpoint)["space"])


def _cmd_fit_predictor(args: argparse.Namespace) -> int:
    from eqsearch.files import check_output_file
    from predictors.fitting import FitConfig, default_predictor_path, fit_predictor, metrics_path

    if not Path(args.samples).is_file():
        raise UsageError(f"samples file not found: {args.samples}")
    config = FitConfig(
        backend=args.backend,
        holdout=args.test_fraction,
        seed=args.seed,
        options=dict(parse_option(text) for text in args.option),
    )
    target = Path(args.out) if args.out else default_predictor_path(args.samples, args.backend)
    check_output_file(target, kind="predictor", force=args.force)
    check_output_file(metrics_path(target), kind="json", force=args.force)
    space = _samples_space(args)
    console = make_console()
    with status(console, f"fitting the {args.backend} predictor", not args.no_progress):
        result = fit_predictor(args.samples, space, config, out=target)
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
