"""``eqsearch sample`` and ``eqsearch fit-predictor``: sample files and CQAP predictors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    finite_float,
    parse_option,
    positive_int,
    seed_int,
)
from eqsearch.app.commands.output_options import add_output_file_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, status


def register(commands: Any) -> None:
    """Add the ``sample`` and ``fit-predictor`` subcommands."""
    sample = commands.add_parser(
        "sample", help="measure sampled subnets with the supernet (a predictor's training data)"
    )
    add = sample.add_argument
    add("--supernet", help="a supernet.pt checkpoint")
    add(
        "--subnets",
        "--n",
        dest="n",
        type=positive_int,
        default=1000,
        help="distinct subnets over all shards (default 1000; --n is an alias)",
    )
    add("--out", help="samples CSV (default: samples.csv beside the checkpoint)")
    add("--seed", type=seed_int, default=0, help="seed of the draw (a rerun with it resumes)")
    add("--strategy", default="spread", help="spread (over average bits, default) or uniform")
    add("--form-draw", default="global", help="global (one form per subnet) or per_layer")
    add("--shard", help="i/n: evaluate every n-th subnet from the i-th (default: torchrun rank)")
    add("--split", default="holdout", choices=("holdout", "test"), help="images to score on")
    add_image_count_arguments(
        sample,
        "images to score on: the held-out training images with --split holdout (the same "
        "as --holdout), a fixed subset of the test split with --split test",
    )
    add(
        "--holdout",
        type=positive_int,
        help="training images to score on (default: the checkpoint's)",
    )
    add("--data-root", help="override the data root stored in the checkpoint")
    add("--device", default="auto", help=DEVICE_HELP)
    add("--merge", nargs="+", metavar="SHARD", help="merge these shard files into --out instead")
    add_force_argument(sample, "--out of --merge")
    add_progress_argument(sample)
    sample.set_defaults(handler=_cmd_sample)

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


def _cmd_sample(args: argparse.Namespace) -> int:
    from eqsearch.app.measure import sample_subnets
    from predictors.dataset import merge_samples, parse_shard

    console = make_console()
    if args.merge:
        if not args.out:
            raise UsageError("--merge writes the merged file to --out; give --out")
        for path in args.merge:
            if not Path(path).is_file():
                raise UsageError(f"shard file not found: {path}")
        merged = merge_samples(args.merge, args.out, force=args.force)
        console.print(f"merged {len(args.merge)} shard files into {merged}")
        return EXIT_OK
    if not args.supernet:
        raise UsageError("give --supernet (or --merge with --out)")
    if not Path(args.supernet).is_file():
        raise UsageError(f"checkpoint not found: {args.supernet}")
    if args.n < 1:
        raise UsageError(f"--n must be a positive integer; got {args.n}")
    shard = parse_shard(args.shard) if args.shard else None
    run = sample_subnets(
        args.supernet,
        args.out,
        args.n,
        seed=args.seed,
        strategy=args.strategy,
        forms=args.form_draw,
        shard=shard,
        split=args.split,
        bn_images=args.bn_images,
        holdout=args.holdout,
        val_images=args.val_images,
        data_root=args.data_root,
        device=args.device,
        progress=not args.no_progress,
    )
    table = Table(title="subnet samples")
    table.add_column("file")
    table.add_column("rows", justify="right")
    table.add_column("added now", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(str(run.path), str(run.rows), str(run.new_rows), f"{run.seconds:.1f}")
    if run.merged is not None:
        table.add_row(str(run.merged), str(args.n), "(merged)", "")
    console.print(table)
    return EXIT_OK


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
