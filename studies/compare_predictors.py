"""Study: k-fold cross-validation of every registered predictor backend on one samples file."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eqsearch.app.commands.common import (
    parse_option,
    positive_int,
)
from eqsearch.app.console import make_console, status
from eqsearch.errors import InputError
from eqsearch.files import atomic_save_figure, atomic_write_text, check_outputs
from eqsearch.locks import hold_directory
from eqsearch.space import ElasticSpace
from predictors.metrics import prediction_metrics
from predictors.registry import PREDICTORS, build_predictor
from predictors.samples.reading import kfold_indices, load_samples
from predictors.samples.sidecars import read_samples_space
from studies.entry import add_run_arguments, report_study, study_entry

METRIC_COLUMNS = ("kendall_tau", "spearman", "pearson", "rmse", "top10")
OUTPUTS = {"predictors.md": "report", "predictors.png": "image"}
"""The files the study writes (name → kind, see ``eqsearch.files.KINDS``)."""


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_predictors` measured.

    Attributes:
        table: one row per backend: fold means of the metrics, fit seconds, predict µs/config.
        predictions: out-of-fold predictions per backend (aligned with ``measured``).
        measured: the measured accuracies of the samples.
        markdown: ``table`` as a markdown table.
        plot: the PNG of predicted vs measured, when an output directory was given.
    """

    table: pd.DataFrame
    predictions: dict[str, np.ndarray]
    measured: np.ndarray
    markdown: str
    plot: Path | None


def _markdown(table: pd.DataFrame, *, n: int, folds: int) -> str:
    header = (
        "| backend | Kendall τ | Spearman | Pearson | RMSE (pts) | top-10 % precision "
        "| fit s | predict µs/config |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for name, row in table.iterrows():
        lines.append(
            f"| {name} | {row.kendall_tau:.3f} | {row.spearman:.3f} | {row.pearson:.3f} "
            f"| {row.rmse:.3f} | {row.top10:.2f} | {row.fit_seconds:.2f} "
            f"| {row.predict_us_per_config:.2f} |"
        )
    lines.append(f"\n{folds}-fold cross-validation over {n} sampled subnets (fold means).")
    return "\n".join(lines)


def _plot(predictions: Mapping[str, np.ndarray], measured: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, len(predictions), figsize=(4 * len(predictions), 4), squeeze=False
    )
    low, high = float(measured.min()), float(measured.max())
    for axis, (name, predicted) in zip(axes[0], predictions.items(), strict=True):
        axis.scatter(measured, predicted, s=6, alpha=0.5)
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        axis.set_title(name)
        axis.set_xlabel("measured top-1 (%)")
        axis.set_ylabel("predicted top-1 (%)")
    figure.tight_layout()
    atomic_save_figure(figure, path, dpi=120)
    plt.close(figure)
    return path


def compare_predictors(
    samples: str | Path,
    *,
    space: ElasticSpace | None = None,
    backends: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    out_dir: str | Path | None = None,
) -> Comparison:
    """Cross-validate predictor backends on one samples file.

    Args:
        samples: a samples CSV (``eqsearch sample``).
        space: its space; by default the ``.space.json`` sidecar beside it.
        backends: names from the registry (all by default).
        folds: k of the k-fold split (seeded by ``seed``).
        seed: seeds the folds and the backends.
        options: per-backend hyper-parameters, e.g. ``{"xgboost": {"max_depth": 4}}``.
        out_dir: where to write ``predictors.md`` and ``predictors.png`` (nothing written if
            None; files of another kind at their names are refused before any work).
    """
    names = check_backends(backends)
    if out_dir is not None:
        check_outputs(out_dir, OUTPUTS, force=True)
    chosen_space = space or read_samples_space(samples)
    if chosen_space is None:
        raise InputError(f"no space file beside {samples}; pass the space explicitly")
    unused = sorted(set(options or {}) - set(names))
    if unused:
        raise InputError(
            f"options for the {unused[0]} backend, which this comparison does not run (it runs "
            f"{', '.join(names)}); drop them or add the backend"
        )
    for name in names:  # every backend's options are checked before the first fit
        build_predictor(name, chosen_space, seed=seed, **dict((options or {}).get(name, {})))
    configs, measured = load_samples(samples, chosen_space)
    batch = chosen_space.batch(configs)
    parts = kfold_indices(len(configs), folds, seed=seed)
    rows: dict[str, dict[str, float]] = {}
    predictions: dict[str, np.ndarray] = {}
    for name in names:
        out_of_fold = np.empty(len(configs), dtype=np.float64)
        fold_metrics: list[dict[str, float]] = []
        fit_seconds: list[float] = []
        predict_us: list[float] = []
        for test in parts:
            train = np.setdiff1d(np.arange(len(configs)), test)
            extra = dict((options or {}).get(name, {}))
            predictor = build_predictor(name, chosen_space, seed=seed, **extra)
            started = time.perf_counter()
            predictor.fit(batch.take(train), measured[train])
            fit_seconds.append(time.perf_counter() - started)
            test_batch = batch.take(test)
            started = time.perf_counter()
            predicted = predictor.predict(test_batch)
            predict_us.append(1e6 * (time.perf_counter() - started) / len(test))
            out_of_fold[test] = predicted
            fold_metrics.append(prediction_metrics(measured[test], predicted))
        row = {key: float(np.mean([m[key] for m in fold_metrics])) for key in METRIC_COLUMNS}
        row["fit_seconds"] = float(np.mean(fit_seconds))
        row["predict_us_per_config"] = float(np.median(predict_us))
        rows[name] = row
        predictions[name] = out_of_fold
    table = pd.DataFrame.from_dict(rows, orient="index")
    markdown = _markdown(table, n=len(configs), folds=folds)
    plot = None
    if out_dir is not None:
        directory = Path(out_dir)
        atomic_write_text(directory / "predictors.md", markdown + "\n")
        plot = _plot(predictions, measured, directory / "predictors.png")
    return Comparison(table, predictions, measured, markdown, plot)


def check_backends(backends: Sequence[str] | None) -> list[str]:
    """The backends to compare (every registered one by default).

    Raises:
        InputError: a name that is not registered.
    """
    names = list(backends) if backends else list(PREDICTORS)
    for name in names:
        if name not in PREDICTORS:
            raise InputError(f"unknown backend {name!r}; registered: {', '.join(PREDICTORS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``eqsearch study predictors`` / ``python -m studies.compare_predictors``."""
    add = parser.add_argument
    add("--samples", required=True, help="a samples CSV written by eqsearch sample")
    add("--backends", help="comma-separated backends (default: every registered one)")
    add(
        "--folds", type=positive_int, default=5, help="k of the k-fold cross-validation (default 5)"
    )
    add(
        "--option",
        action="append",
        default=[],
        metavar="BACKEND.KEY=VALUE",
        help="a backend option, e.g. xgboost.max_depth=4 (repeatable)",
    )
    add("--out", help="directory for predictors.md and predictors.png (default: beside samples)")
    add_run_arguments(
        parser,
        seed=0,
        seed_help="seeds the folds and the fits",
        outputs="predictors.md and predictors.png",
        device_help=None,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed flags; prints the markdown table. Returns an exit code."""
    options: dict[str, dict[str, Any]] = {}
    for text in args.option:
        key, value = parse_option(text)
        backend, dot, name = key.partition(".")
        if not dot or not backend or not name:
            raise InputError(
                f"--option takes BACKEND.KEY=VALUE (e.g. xgboost.max_depth=4); got {text!r}"
            )
        options.setdefault(backend, {})[name] = value
    backends = check_backends(args.backends.split(",") if args.backends else None)
    if args.folds < 2:
        raise InputError(f"--folds must be at least 2; got {args.folds}")
    if not Path(args.samples).is_file():
        raise InputError(f"samples file not found: {args.samples}")
    out = Path(args.out) if args.out else Path(args.samples).parent
    check_outputs(out, OUTPUTS, force=args.force)
    console = make_console()
    with (
        hold_directory(out, what="the output directory"),
        status(console, f"cross-validating {len(backends)} backends", not args.no_progress),
    ):
        result = compare_predictors(
            args.samples,
            backends=backends,
            folds=args.folds,
            seed=args.seed,
            options=options or None,
            out_dir=out,
        )
    return report_study(result.markdown, out / "predictors.md", result.plot)


main = study_entry("predictors")
"""``python -m studies.compare_predictors``: ``eqsearch study predictors``."""


if __name__ == "__main__":
    raise SystemExit(main())
