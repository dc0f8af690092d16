"""``eqsearch nsga --refine R``: the command-line side of predictor-in-the-loop refinement."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import EXIT_OK, UsageError
from eqsearch.app.console import print_frame, status

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.problem import SearchProblem
    from eqsearch.space import ElasticSpace


def add_refine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--refine R`` and ``--samples`` of ``eqsearch nsga``."""
    from eqsearch.app.commands.common import non_negative_int

    parser.add_argument(
        "--refine",
        type=non_negative_int,
        default=0,
        metavar="R",
        help="measure --verify K configs of the predicted front, refit the predictor on them "
        "and search again, R times; writes the measured front",
    )
    parser.add_argument(
        "--samples",
        help="with --refine: the predictor's samples (default samples.csv beside the checkpoint)",
    )


def check_refine_arguments(args: argparse.Namespace, objectives: list[str]) -> None:
    """Refuse flags that do not go with ``--refine`` (before anything is loaded)."""
    if not args.refine:
        if args.samples is not None:
            raise UsageError("--samples is read by --refine R only")
        return
    if args.oracle != "predictor":
        raise UsageError("--refine refits the predictor; it needs --oracle predictor")
    if not args.verify:
        raise UsageError("--refine R measures --verify K configs per search; give --verify K")
    if "accuracy" not in objectives:
        raise UsageError("--refine needs accuracy among the --objectives")


def run_refinement(
    args: argparse.Namespace,
    space: ElasticSpace,
    problem_settings: dict[str, Any],
    checkpoint: dict[str, Any],
    out: Path,
    console: Console,
) -> int:
    """Refine, write the measured front, print it and each round's figures."""
    from eqsearch.app.commands.searching import (
        annotate_front,
        predictor_oracle,
        with_predictor_source,
    )
    from eqsearch.app.console import front_table
    from eqsearch.app.refine import RefineSettings, refine_search, samples_scoring_oracle
    from eqsearch.problem import make_problem
    from predictors import load_samples

    samples = Path(args.samples) if args.samples else Path(args.supernet).parent / "samples.csv"
    if not samples.is_file():
        raise UsageError(
            f"--refine refits the predictor on its samples: {samples} not found (give --samples)"
        )
    start = predictor_oracle(args, space, console)  # its backend and options are refitted
    predictor = start.predictor  # type: ignore[attr-defined]
    configs, accuracies = load_samples(samples, space)
    with status(console, "loading the supernet and its scoring images", not args.no_progress):
        measure = samples_scoring_oracle(args.supernet, samples, device=args.device)

    def problem_for(oracle: AccuracyOracle) -> SearchProblem:
        return make_problem(space, oracle, **problem_settings)

    settings = RefineSettings(
        rounds=args.refine,
        per_round=args.verify,
        backend=predictor.name,
        options=predictor.options_dict(),
        predictor_seed=predictor.seed,
        engine=args.engine,
        population=args.population,
        generations=args.generations,
        seed=args.seed,
    )
    with status(
        console,
        f"{args.refine + 1} searches, {args.verify} configs measured after each",
        not args.no_progress,
    ):
        result = refine_search(problem_for, measure, configs, accuracies, settings)
    front = with_predictor_source(annotate_front(result.front, checkpoint, args), start)
    title = str(front.info.get("title", "")).replace("NSGA-II", f"NSGA-II refined {args.refine}×")
    front = replace(front, info={**front.info, "title": title, "samples": str(samples)})
    paths = front.write(out)
    print_frame(console, front_table(front), f"measured front: {len(front)} configs ({title})")
    table = Table(title="refinement rounds")
    for column in ("search", "fitted on", "predicted front", "measured", "Kendall τ"):
        table.add_column(column, justify="right")
    for entry in result.rounds:
        tau = "-" if entry.kendall_tau is None else f"{entry.kendall_tau:.2f}"
        table.add_row(
            str(entry.index), str(entry.samples), str(entry.front_size), str(entry.measured), tau
        )
    console.print(table)
    console.print(f"{len(result.measured)} configs measured on the supernet")
    console.print("wrote " + ", ".join(str(path) for path in paths))
    return EXIT_OK
