"""Fitting a predictor on a samples file: split, fit, held-out metrics, save (``fit-predictor``)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text
from eqsearch.space import ElasticSpace
from predictors.base import BasePredictor
from predictors.metrics import prediction_metrics
from predictors.registry import PREDICTORS, build_predictor, predictor_filename
from predictors.samples.reading import load_samples, split_indices


@dataclass(frozen=True)
class FitConfig:
    """How ``fit_predictor`` fits.

    Args:
        backend: a registered backend (``mlp``, ``xgboost``, ``ridge``).
        holdout: fraction of the samples held out for the reported metrics.
        seed: seeds the split and the backend.
        options: backend hyper-parameters.
    """

    backend: str = "mlp"
    holdout: float = 0.2
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in PREDICTORS:
            raise InputError(
                f"FitConfig.backend must be one of {', '.join(PREDICTORS)}; got {self.backend!r}"
            )
        if isinstance(self.holdout, bool) or not 0 < self.holdout < 1:
            raise InputError(f"FitConfig.holdout must be in (0, 1); got {self.holdout!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"FitConfig.seed must be an integer; got {self.seed!r}")


@dataclass(frozen=True)
class FitResult:
    """A fitted, saved predictor and how it scored on the held-out samples.

    Attributes:
        predictor: fitted on the training split.
        path: where it was saved.
        metrics: Kendall τ, Spearman, Pearson, RMSE and top-10 % precision on the held-out split.
        n_train, n_test: samples in each split.
        fit_seconds: wall time of fitting.
    """

    predictor: BasePredictor
    path: Path
    metrics: dict[str, float]
    n_train: int
    n_test: int
    fit_seconds: float


def default_predictor_path(samples_csv: str | Path, backend: str) -> Path:
    """``predictor-<backend>.<ext>`` beside the samples file (where ``nsga`` looks)."""
    return Path(samples_csv).parent / predictor_filename(backend)


def fit_predictor(
    samples_csv: str | Path,
    space: ElasticSpace,
    config: FitConfig | None = None,
    *,
    out: str | Path | None = None,
) -> FitResult:
    """Fit ``config.backend`` on a seeded training split of a samples file and save it.

    The reported metrics are on the held-out split, which the saved predictor never saw.

    Args:
        samples_csv: a file written by ``eqsearch sample``.
        space: the space of its configs.
        config: backend, split and seed (defaults: mlp, 20 % held out, seed 0).
        out: where to save; by default beside the samples file.
    """
    chosen = config or FitConfig()
    configs, accuracies = load_samples(samples_csv, space)
    train, test = split_indices(len(configs), holdout=chosen.holdout, seed=chosen.seed)
    batch = space.batch(configs)
    predictor = build_predictor(chosen.backend, space, seed=chosen.seed, **dict(chosen.options))
    started = time.perf_counter()
    predictor.fit(batch.take(train), accuracies[train])
    seconds = time.perf_counter() - started
    predicted = predictor.predict(batch.take(test))
    metrics = prediction_metrics(accuracies[test], predicted)
    target = Path(out) if out is not None else default_predictor_path(samples_csv, chosen.backend)
    report = {
        "backend": chosen.backend,
        "samples": str(samples_csv),
        "held_out_fraction": chosen.holdout,
        "seed": chosen.seed,
        "options": dict(chosen.options),
        "n_train": len(train),
        "n_test": len(test),
        "fit_seconds": seconds,
        "metrics": metrics,
    }
    save_fitted(predictor, target, report)
    return FitResult(predictor, target, metrics, len(train), len(test), seconds)


def save_fitted(predictor: BasePredictor, target: str | Path, report: Mapping[str, Any]) -> None:
    """Save a fitted predictor at ``target`` and its held-out ``report`` (with ``metrics``)
    beside it, where a search reads its held-out τ (:func:`metrics_path`)."""
    predictor.save(target)
    atomic_write_text(metrics_path(target), json.dumps(dict(report), indent=2) + "\n")


def metrics_path(predictor_path: str | Path) -> Path:
    """Where ``fit_predictor`` writes the held-out metrics of a predictor:
    ``predictor-<backend>.metrics.json`` beside it."""
    path = Path(predictor_path)
    return path.with_name(f"{path.stem}.metrics.json")
