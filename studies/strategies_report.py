"""The strategies study's measured outcomes and how they are scored, tabled, plotted and
saved."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eqsearch.files import atomic_save_figure, atomic_write_text
from eqsearch.pareto import ParetoFront
from studies.fronts import log_hypervolume
from studies.report import binomial_standard_error, markdown_table


@dataclass
class StrategyOutcome:
    """One strategy's measured fronts and costs.

    Attributes:
        name, label: key and table label.
        front: measured accuracy vs BitOPs.
        weight_front: measured accuracy vs W-Comp (average weight bits).
        measurements: distinct configs it measured on the supernet for its two fronts.
        seconds: wall time of its searches and those measurements.
        prior_measurements, prior_seconds: what it needed before: the measured sensitivities'
            one-layer-lowered configs, or the predictor's samples (their recorded measuring
            time, even when they were read back from their files).
        hypervolume: of ``front`` (see :func:`front_hypervolume`).
        best_at: best measured accuracy among its configs with average weight bits <= b.
    """

    name: str
    label: str
    front: ParetoFront
    weight_front: ParetoFront
    measurements: int
    seconds: float
    prior_measurements: int = 0
    prior_seconds: float = 0.0
    hypervolume: float = 0.0
    best_at: dict[float, float | None] = field(default_factory=dict)


def front_hypervolume(front: ParetoFront, reference: tuple[float, float]) -> float:
    """Hypervolume of a measured (accuracy, BitOPs) front in accuracy points × decades of
    BitOPs, up to ``reference`` = (accuracy, BitOPs); BitOPs on a log scale, so that a
    decade of cheap configs counts as much as one of expensive ones."""
    return log_hypervolume(front.column("accuracy"), front.column("bitops"), reference)


def best_accuracy_at(fronts: Sequence[ParetoFront], budget: float) -> float | None:
    """The best measured accuracy among the fronts' configs with average weight bits <=
    ``budget`` (None where none has)."""
    best: float | None = None
    for front in fronts:
        w_bits = front.cost_columns()["w_bits"]
        fits = w_bits <= budget + 1e-9
        if fits.any():
            value = float(front.column("accuracy")[fits].max())
            best = value if best is None else max(best, value)
    return best


def noise_line(outcomes: Sequence[StrategyOutcome], n_images: int) -> str:
    """The grain and the binomial standard error of one accuracy on the scoring images."""
    accuracies = np.concatenate([o.front.column("accuracy") for o in outcomes])
    typical = float(np.median(accuracies)) / 100.0
    standard_error = binomial_standard_error(100.0 * typical, n_images)
    return (
        f"Every accuracy is measured on the same {n_images} scoring images (one image = "
        f"{100 / n_images:.3f} points); at the fronts' median accuracy ({100 * typical:.2f} %) "
        f"one binomial standard error is ±{standard_error:.2f} points. The strategies are "
        "scored on the same images, so their differences are less noisy than that; the "
        "accuracy on unseen images can differ by about as much."
    )


def strategies_markdown(
    outcomes: Sequence[StrategyOutcome],
    reference: tuple[float, float],
    n_images: int,
    *,
    target: str,
    weight_budgets: Sequence[float],
    n_samples: int,
    checkpoint: Path,
) -> str:
    """The study's report: one row per strategy, how it is scored, and its noise."""
    budgets = weight_budgets
    header = [
        "strategy",
        "measurements (before)",
        "wall s (before)",
        "front",
        "hypervolume",
        *(f"best % at W ≤ {b:g}" for b in budgets),
    ]
    rows = [
        [
            o.label,
            f"{o.measurements} ({o.prior_measurements})"
            if o.prior_measurements
            else o.measurements,
            f"{o.seconds:.1f} ({o.prior_seconds:.1f})" if o.prior_seconds else f"{o.seconds:.1f}",
            len(o.front),
            f"{o.hypervolume:.3f}",
            *("-" if o.best_at.get(b) is None else f"{o.best_at[b]:.2f}" for b in budgets),
        ]
        for o in outcomes
    ]
    lines = [
        f"# Strategies on {checkpoint}",
        "",
        markdown_table(rows, header),
        "",
        f"Target `{target}`. Hypervolume of the measured accuracy-vs-BitOPs front in "
        "accuracy points × decades of BitOPs, up to the reference "
        f"({reference[0]:.2f} %, {reference[1]:.4g} BitOPs): the lowest-bit config's "
        "accuracy minus one point, and the highest-bit config's BitOPs. The W ≤ b columns: "
        "the best measured accuracy among the strategy's configs of either front. Measurements "
        "count the distinct configs a strategy measured for its two fronts, its wall time the "
        "searches and those measurements; in brackets what it needed before: the NSGA-II rows "
        f"the predictor's {n_samples} samples (their recorded measuring time), the "
        "measured-sensitivity rows the one-layer-lowered configs (computed once, shared by "
        "the ILP and greedy rows), the Hessian rows the traces' seconds.",
        "",
        noise_line(outcomes, n_images),
    ]
    return "\n".join(lines)


def _step(axis: Any, costs: np.ndarray, accuracy: np.ndarray, style: str, label: str) -> None:
    """A front as a staircase over its costs, in increasing cost."""
    order = np.argsort(costs)
    axis.step(
        costs[order], accuracy[order], style, where="post", marker="o", markersize=3, label=label
    )


def plot_strategies(outcomes: Sequence[StrategyOutcome], path: Path, model: str) -> Path:
    """Both measured fronts of every strategy, side by side."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    styles = ["-", "--", "-.", ":"]
    for index, outcome in enumerate(outcomes):
        style = styles[index % len(styles)]
        front, weight_front = outcome.front, outcome.weight_front
        _step(left, front.column("bitops"), front.column("accuracy"), style, outcome.label)
        w_bits = weight_front.cost_columns()["w_bits"]
        _step(right, w_bits, weight_front.column("accuracy"), style, outcome.label)
    left.set_xscale("log")
    left.set_xlabel("BitOPs")
    right.set_xlabel("average weight bits (searched layers)")
    for axis in (left, right):
        axis.set_ylabel("measured top-1 (%)")
        axis.grid(True, alpha=0.3)
    left.set_title(f"{model}: measured accuracy vs BitOPs", fontsize=9)
    right.set_title(f"{model}: measured accuracy vs average weight bits", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)
    return path


def _front_rows(front: ParetoFront) -> list[dict[str, Any]]:
    columns = front.cost_columns()
    return [
        {
            "config": config.to_dict(),
            "accuracy": float(front.column("accuracy")[row]),
            "bitops": float(columns["bitops"][row]),
            "w_bits": float(columns["w_bits"][row]),
            "a_bits": float(columns["a_bits"][row]),
        }
        for row, config in enumerate(front.configs)
    ]


def write_strategies_json(
    path: Path,
    outcomes: Sequence[StrategyOutcome],
    reference: tuple[float, float],
    n_images: int,
    settings: Mapping[str, Any],
    samples: Path,
) -> None:
    """Every strategy's measured fronts, counts and scores as JSON."""
    payload = {
        "settings": dict(settings),
        "samples": str(samples),
        "scoring_images": n_images,
        "reference": list(reference),
        "strategies": [
            {
                "name": o.name,
                "label": o.label,
                "measurements": o.measurements,
                "seconds": o.seconds,
                "prior_measurements": o.prior_measurements,
                "prior_seconds": o.prior_seconds,
                "hypervolume": o.hypervolume,
                "best_at": {str(k): v for k, v in o.best_at.items()},
                "front": _front_rows(o.front),
                "weight_front": _front_rows(o.weight_front),
            }
            for o in outcomes
        ],
    }
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
