"""The joint-search study's measured fronts and how they are tabled, plotted and saved."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eqsearch.files import atomic_save_figure, atomic_write_text
from eqsearch.space import SubnetConfig
from studies.fronts import non_dominated_rows
from studies.report import binomial_standard_error, markdown_table

if TYPE_CHECKING:
    from studies.joint_search import JointStudySettings


@dataclass
class FrontOutcome:
    """One searched family: its verified configs' BitOPs and measured accuracies."""

    name: str
    label: str
    bitops: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    configs: list[SubnetConfig]
    hypervolume: float = math.nan
    best_at: dict[float, float | None] = field(default_factory=dict)


def best_within(outcome: FrontOutcome, limit: float) -> float | None:
    """The best measured accuracy of the family within ``limit`` BitOPs (None: none fits)."""
    fits = outcome.bitops <= limit * (1 + 1e-9)
    return float(outcome.measured[fits].max()) if fits.any() else None


def noise_line(outcomes: Sequence[FrontOutcome], n_images: int) -> str:
    """The measurement noise of one accuracy: its grain and the binomial standard error of
    a top-1 estimate on ``n_images`` images at the measured accuracies."""
    measured = np.concatenate([outcome.measured for outcome in outcomes]) / 100.0
    errors = np.array([binomial_standard_error(100.0 * m, n_images) for m in measured])
    return (
        f"Each accuracy is measured once on {n_images} held-out training images (grain "
        f"{100.0 / n_images:.2f} points; binomial standard error {errors.min():.1f}-"
        f"{errors.max():.1f} points at these accuracies), one supernet, one seed: differences "
        "below about two standard errors are noise."
    )


def joint_markdown(
    outcomes: Sequence[FrontOutcome],
    reference: tuple[float, float],
    n_images: int,
    settings: JointStudySettings,
    n_samples: int,
    checkpoint: Path,
) -> str:
    """The study's report: one row per family, how it was searched, and its noise."""
    header = ["front", "measured", "hypervolume"]
    header += [f"best ≤ {budget:g}·B8" for budget in settings.budgets]
    rows = []
    for outcome in outcomes:
        cells = [outcome.label, str(len(outcome.measured)), f"{outcome.hypervolume:.2f}"]
        for budget in settings.budgets:
            value = outcome.best_at.get(budget)
            cells.append("-" if value is None else f"{value:.2f}")
        rows.append(cells)
    lines = [
        f"# Joint search against bits-only and architecture-only search ({checkpoint})",
        "",
        f"In each family NSGA-II (pymoo, population {settings.search.population}, "
        f"{settings.search.generations} generations) runs without a budget and under each BitOPs "
        f"budget the family can meet, on a {settings.backend} predictor of the joint space "
        f"fitted on {n_samples} measured samples, then {settings.refine} more rounds, each "
        f"after refitting on the family's measurements: {settings.search.verify} configs "
        "spread over every predicted front are measured on the supernet, and the table and "
        "plot use those measurements only. B8 = BitOPs of the largest "
        f"architecture at W8A8 ({reference[1]:.4g}); hypervolume in accuracy points × decades "
        f"of BitOPs up to ({reference[0]:.2f} %, B8).",
        "",
        markdown_table(rows, header),
        "",
        noise_line(outcomes, n_images),
    ]
    return "\n".join(lines)


def plot_joint(outcomes: Sequence[FrontOutcome], path: Path, model: str, top: float) -> Path:
    """Every family's measured front (lines) and measured configs (dots) over BitOPs."""
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for outcome in outcomes:
        front = non_dominated_rows(outcome.measured, outcome.bitops)
        (line,) = axes.plot(
            outcome.bitops[front],
            outcome.measured[front],
            marker="o",
            markersize=4,
            linewidth=1.2,
            drawstyle="steps-post",
            label=outcome.label,
        )
        axes.scatter(
            outcome.bitops, outcome.measured, s=8, alpha=0.35, color=line.get_color(), linewidths=0
        )
    axes.axvline(top, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel("BitOPs per image")
    axes.set_ylabel("measured top-1 accuracy (%)")
    axes.set_title(f"{model}: measured fronts (lines) and every measured config (dots)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    result = atomic_save_figure(figure, path)
    plt.close(figure)
    return result


def write_joint_json(
    path: Path,
    outcomes: Sequence[FrontOutcome],
    reference: tuple[float, float],
    n_images: int,
    settings: JointStudySettings,
    samples: Path,
) -> Path:
    """Every family's measured points, with their configs, as JSON."""
    data: dict[str, Any] = {
        "reference": list(reference),
        "scoring_images": n_images,
        "samples": str(samples),
        "settings": {
            "budgets": list(settings.budgets),
            "uniform_bits": list(settings.uniform_bits),
            "arch_form": settings.arch_form,
            "backend": settings.backend,
            "population": settings.search.population,
            "generations": settings.search.generations,
            "verify": settings.search.verify,
            "refine": settings.refine,
            "seed": settings.seed,
        },
        "fronts": [
            {
                "name": outcome.name,
                "label": outcome.label,
                "hypervolume": outcome.hypervolume,
                "best_at": {str(k): v for k, v in outcome.best_at.items()},
                "points": [
                    {
                        "bitops": float(b),
                        "measured_accuracy": float(m),
                        "predicted_accuracy": float(p),
                        "config": config.to_dict(),
                    }
                    for b, m, p, config in zip(
                        outcome.bitops,
                        outcome.measured,
                        outcome.predicted,
                        outcome.configs,
                        strict=True,
                    )
                ],
            }
            for outcome in outcomes
        ],
    }
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")
