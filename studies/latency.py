"""Study: does BitOPs, MACs or a measured latency table rank subnets like the runtime does, and
what does searching against measured latency buy over searching against BitOPs?"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eqsearch.app.commands.common import (
    non_negative_int,
    positive_int,
    progress_printer,
)
from eqsearch.errors import InputError
from eqsearch.files import (
    atomic_save_figure,
    atomic_write_text,
    check_output_directory,
)
from studies.entry import add_run_arguments, report_study, run_in_directory, study_entry
from studies.front_search import (
    add_front_search_arguments,
    front_search_from_args,
    settings_record,
)
from studies.latency_search import SearchFront, search_comparison, search_markdown
from studies.latency_tables import (
    LatencyStudySettings,
    ProxyRow,
    available_runtimes,
    proxy_markdown,
    proxy_rows,
)

REPORT_NAME = "latency.md"
PLOT_NAME = "latency.png"
RESULT_NAME = "latency.json"
OUTPUTS = {REPORT_NAME: "report", PLOT_NAME: "image", RESULT_NAME: "json"}
"""The study's own files (name → kind); the latency tables beside them are a reused cache."""


@dataclass
class LatencyStudy:
    """What the study measured and where it wrote it."""

    proxies: list[ProxyRow]
    fronts: list[SearchFront]
    markdown: str
    report: Path
    plot: Path


def _plot(
    rows: Sequence[ProxyRow], fronts: Sequence[SearchFront], runtimes: Sequence[str], path: Path
) -> Path:
    panels = len(rows) + (len(runtimes) if fronts else 0)
    figure, axes = plt.subplots(1, max(1, panels), figsize=(4.2 * max(1, panels), 3.8))
    axes = np.atleast_1d(axes)
    for axis, row in zip(axes, rows, strict=False):
        measured = np.array([r["measured_ms"] for r in row.table.holdout])
        predicted = np.array([r["predicted_ms"] for r in row.table.holdout])
        axis.scatter(measured, predicted, s=10)
        low, high = float(measured.min()), float(measured.max())
        axis.plot([low, high], [low, high], color="grey", linewidth=0.8)
        axis.set_xlabel("measured latency (ms)")
        axis.set_ylabel("latency table (ms)")
        axis.set_title(f"{row.space}, {row.runtime}", fontsize=9)
    for axis, runtime in zip(axes[len(rows) :], runtimes, strict=False):
        for front in fronts:
            order = np.argsort(front.latency[runtime])
            axis.plot(
                front.latency[runtime][order],
                front.accuracy[order],
                marker="o",
                markersize=4,
                linewidth=0.8,
                label=front.label,
            )
        axis.set_xlabel(f"measured latency on {runtime} (ms)")
        axis.set_ylabel("measured top-1 accuracy (%)")
        axis.set_title(f"picks measured on {runtime}", fontsize=9)
        axis.legend(fontsize=6)
    for axis in axes:
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    result = atomic_save_figure(figure, path)
    plt.close(figure)
    return result


def run_latency_study(
    out: str | Path,
    settings: LatencyStudySettings | None = None,
    *,
    supernet: str | Path | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> LatencyStudy:
    """Part A on untrained spaces, part B when ``supernet`` (a trained checkpoint) is given.

    Writes ``latency.md``, ``latency.png`` and ``latency.json`` (and the latency tables,
    reused by a later run measured with the same CPU, runtime version and settings) into
    ``out``.
    """
    chosen = settings or LatencyStudySettings()
    directory = check_output_directory(out)
    directory.mkdir(parents=True, exist_ok=True)
    runtimes = available_runtimes(chosen.runtimes)
    if not runtimes:
        raise InputError(f"none of the runtimes {', '.join(chosen.runtimes)} is installed")
    load_before = os.getloadavg()[0]
    rows = proxy_rows(directory, chosen, runtimes, log)
    fronts: list[SearchFront] = []
    scoring, spread = 0, math.nan
    if supernet is not None:
        fronts, scoring, spread = search_comparison(
            Path(supernet), directory, chosen, runtimes, log, device=device
        )
    load_after = os.getloadavg()[0]
    lines = [
        "# Latency: proxies against a runtime, and search against measured latency",
        "",
        "## Which cost ranks subnets like the runtime (held-out random subnets)",
        "",
        f"Spearman's ρ against the measured latency of {chosen.holdout} random subnets of each "
        f"space (architecture, per-layer bits and forms; batch 1, {chosen.threads} threads), "
        "the latency table's error on them (they are not fitted on), and the median relative "
        "spread (inter-quartile range / median) of the measurements.",
        "",
        *proxy_markdown(rows),
    ]
    if fronts:
        lines += [
            "",
            f"## Searched against BitOPs vs against latency ({supernet})",
            "",
            f"NSGA-II (pymoo, {chosen.search.population} × {chosen.search.generations}) for "
            "accuracy and BitOPs, and for accuracy and each runtime's latency table (batch "
            f"{chosen.search_batch}); {chosen.search.verify} picks spread over each front, each "
            f"exported for the runtime and timed (interleaved, {max(chosen.repeats, 15)} "
            f"rounds), its accuracy measured on {scoring} held-out images. Hypervolume in "
            "accuracy points × ms; speed-up: at each accuracy a BitOPs pick reaches, the "
            "fastest BitOPs pick at least that accurate over the fastest pick of the front.",
            "",
            *search_markdown(fronts, runtimes),
        ]
    lines += [
        "",
        f"Noise: latency medians of {chosen.repeats}+ interleaved rounds; the machine's "
        f"one-minute load was {load_before:.1f} before and {load_after:.1f} after on "
        f"{os.cpu_count()} CPUs (median spread of the search picks' timings "
        f"{100 * spread:.0f} %)."
        + (
            f" Each accuracy is one measurement on {scoring} images (grain "
            f"{100 / scoring:.2f} points)."
            if scoring
            else ""
        ),
    ]
    markdown = "\n".join(lines)
    report = atomic_write_text(directory / REPORT_NAME, markdown + "\n")
    plot = _plot(rows, fronts, runtimes if fronts else [], directory / PLOT_NAME)
    _write_json(directory / RESULT_NAME, rows, fronts, chosen)
    return LatencyStudy(rows, fronts, markdown, report, plot)


def _write_json(
    path: Path, rows: Sequence[ProxyRow], fronts: Sequence[SearchFront], settings: Any
) -> Path:
    data = {
        "settings": settings_record(settings),
        "proxies": [
            {
                "space": row.space,
                "runtime": row.runtime,
                "key": row.table.key.to_dict(),
                "validation": dict(row.table.validation),
                "spread": row.table.spread,
                "seconds": row.table.seconds,
            }
            for row in rows
        ],
        "fronts": [
            {
                "name": front.name,
                "label": front.label,
                "hypervolume": front.hypervolume,
                "speedup": front.speedup,
                "picks": [
                    {
                        "config": config.to_dict(),
                        "accuracy": float(front.accuracy[i]),
                        "latency_ms": {r: float(v[i]) for r, v in front.latency.items()},
                    }
                    for i, config in enumerate(front.configs)
                ],
            }
            for front in fronts
        ],
    }
    return atomic_write_text(path, json.dumps(data, indent=2, default=list) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's options (shared by ``eqsearch study latency`` and ``python -m``)."""
    add = parser.add_argument
    add("--out", required=True, help="directory of latency.{md,png,json} and the tables")
    add("--supernet", help="a trained supernet.pt for part B (the search comparison)")
    add("--spaces", default="oqa_mbv3,resnet18", help="models of part A (comma-separated)")
    add("--image-size", type=positive_int, default=224, help="part A's input side")
    add("--runtimes", default="onnxruntime,openvino", help="runtimes (skipped if missing)")
    add("--threads", type=positive_int, default=2, help="runtime threads")
    add("--holdout", type=non_negative_int, default=50, help="held-out subnets per table")
    add("--repeats", type=positive_int, default=10, help="timed rounds per subnet")
    add("--batch", type=positive_int, default=64, help="part B's images per inference")
    add_front_search_arguments(parser, LatencyStudySettings().search, "part B's picks per front")
    add_run_arguments(
        parser,
        seed=0,
        seed_help="seeds the subnets and the searches",
        outputs="latency.{md,png,json}",
        device_help="torch device of the accuracy measurements",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; prints the report."""
    settings = LatencyStudySettings(
        spaces=tuple(s.strip() for s in args.spaces.split(",") if s.strip()),
        image_size=args.image_size,
        runtimes=tuple(r.strip() for r in args.runtimes.split(",") if r.strip()),
        threads=args.threads,
        holdout=args.holdout,
        repeats=args.repeats,
        search_batch=args.batch,
        search=front_search_from_args(args),
        seed=args.seed,
    )
    log = progress_printer(not args.no_progress)
    study = run_in_directory(
        args.out,
        OUTPUTS,
        force=args.force,
        run=lambda: run_latency_study(
            args.out, settings, supernet=args.supernet, device=args.device, log=log
        ),
    )
    return report_study(study.markdown, study.report, study.plot)


main = study_entry("latency")
"""``python -m studies.latency``: ``eqsearch study latency``."""


if __name__ == "__main__":
    raise SystemExit(main())
