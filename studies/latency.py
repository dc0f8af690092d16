"""Study: does BitOPs, MACs or a measured latency table rank subnets like the runtime does, and
what does searching against measured latency buy over searching against BitOPs?"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eqsearch.commands.common import non_negative_int, positive_int, seed_int
from eqsearch.errors import InputError
from eqsearch.files import atomic_save_figure, atomic_write_text, check_output_directory
from eqsearch.latency.table import LatencyTable
from eqsearch.pareto import hypervolume
from eqsearch.space import SubnetConfig
from studies.report import markdown_table

REPORT_NAME = "latency.md"
PLOT_NAME = "latency.png"
RESULT_NAME = "latency.json"
SPACES = {"oqa_mbv3": 1000, "resnet18": 1000}
"""Spaces of part A (untrained: latency depends on the architecture and the choices only)."""


@dataclass(frozen=True)
class LatencyStudySettings:
    """What the latency study measures.

    Args:
        spaces: registered models whose spaces part A measures (at ``image_size``).
        image_size: their input side.
        runtimes: runtimes measured (those not installed are skipped).
        threads: every runtime's threads.
        holdout: random whole subnets measured per latency table.
        repeats: timed rounds per subnet.
        search_batch: images per inference when part B measures the trained supernet's picks.
        population, generations: NSGA-II (pymoo) of every search in part B.
        verify: picks spread over each front, exported and measured.
        seed: seeds the tables' subnets and the searches.
    """

    spaces: tuple[str, ...] = ("oqa_mbv3", "resnet18")
    image_size: int = 224
    runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
    threads: int = 2
    holdout: int = 50
    repeats: int = 10
    search_batch: int = 64
    population: int = 60
    generations: int = 100
    verify: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "threads", "repeats", "search_batch", "population"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"LatencyStudySettings.{name} must be a positive integer")
        if self.verify < 2 or self.generations < 1:
            raise InputError("LatencyStudySettings: verify >= 2 and generations >= 1 needed")


@dataclass
class ProxyRow:
    """Part A: one space on one runtime."""

    space: str
    runtime: str
    table: LatencyTable

    def value(self, name: str) -> float:
        """A validation statistic of the table (NaN where missing)."""
        return float(self.table.validation.get(name, math.nan))


@dataclass
class SearchFront:
    """Part B: one searched front's picks, measured."""

    name: str
    label: str
    configs: list[SubnetConfig]
    accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latency: dict[str, np.ndarray] = field(default_factory=dict)
    hypervolume: dict[str, float] = field(default_factory=dict)
    speedup: dict[str, tuple[float, float, float] | None] = field(default_factory=dict)


@dataclass
class LatencyStudy:
    """What the study measured and where it wrote it."""

    proxies: list[ProxyRow]
    fronts: list[SearchFront]
    markdown: str
    report: Path
    plot: Path


def available_runtimes(names: Sequence[str]) -> list[str]:
    """The runtimes of ``names`` installed here."""
    from supernet.runtimes import runtime_available

    return [name for name in names if runtime_available(name)]


def cached_table(
    path: Path,
    supernet: Any,
    runtime: str,
    settings: LatencyStudySettings,
    batch: int,
    log: Callable[[str], None],
) -> LatencyTable:
    """The table at ``path`` when it was measured here with these settings for this space;
    else a new one (written there)."""
    from eqsearch.latency.cache import find_probe, probe_path
    from eqsearch.latency.fingerprint import machine_key
    from eqsearch.latency.kernels import save_probe
    from supernet.runtimes import get_runtime
    from supernet.runtimes.exporting import input_size
    from supernet.runtimes.latency_build import LatencySettings, build_latency_table
    from supernet.runtimes.probe import ProbeSettings, run_probe

    space = supernet.space
    key = machine_key(
        runtime,
        threads=settings.threads,
        batch=batch,
        image_size=input_size(supernet, space.largest()),
    )
    if path.is_file():
        table = LatencyTable.load(path)
        same_space = table.space_fingerprint == space.fingerprint
        if same_space and not table.key.differences(key) and table.validation.get("n"):
            log(f"reused {path}")
            return table
    engine = get_runtime(runtime)
    probe = find_probe(runtime)
    if probe is None or not probe.covers(space.w_bits, space.a_bits, space.forms):
        log(f"probing {runtime}")
        probe = run_probe(
            engine,
            ProbeSettings(
                w_bits=space.w_bits, a_bits=space.a_bits, forms=space.forms, int4=False, repeats=3
            ),
        )
        stored = probe_path(probe)
        stored.parent.mkdir(parents=True, exist_ok=True)
        save_probe(probe, stored)
    log(f"measuring {path.name} ({settings.holdout} held-out subnets)")
    table = build_latency_table(
        supernet,
        engine,
        probe,
        LatencySettings(
            threads=settings.threads,
            batch=batch,
            repeats=settings.repeats,
            holdout=settings.holdout,
            seed=settings.seed,
        ),
    )
    table.save(path)
    return table


def proxy_rows(
    out: Path, settings: LatencyStudySettings, runtimes: Sequence[str], log: Callable[[str], None]
) -> list[ProxyRow]:
    """Part A: a latency table per space and runtime, with its held-out subnets' ranks."""
    from supernet import build_supernet

    rows = []
    for name in settings.spaces:
        supernet = build_supernet(
            name, num_classes=SPACES.get(name, 1000), in_channels=3, image_size=settings.image_size
        ).eval()
        for runtime in runtimes:
            path = out / f"latency-{name}-{settings.image_size}-{runtime}.json"
            table = cached_table(path, supernet, runtime, settings, 1, log)
            rows.append(ProxyRow(name, runtime, table))
        del supernet
    return rows


def _fronts(
    supernet: Any,
    oracle: Any,
    tables: dict[str, LatencyTable],
    settings: LatencyStudySettings,
) -> list[SearchFront]:
    from eqsearch.engines import nsga2
    from eqsearch.problem import make_problem

    space = supernet.space
    problems: list[tuple[str, str, tuple[str, str], LatencyTable | None]] = [
        ("bitops", "searched against BitOPs", ("accuracy", "bitops"), None)
    ]
    for runtime, table in tables.items():
        problems.append(
            (
                f"latency-{runtime}",
                f"searched against {runtime} latency",
                ("accuracy", "latency"),
                table,
            )
        )
    fronts = []
    for name, label, objectives, latency in problems:
        problem = make_problem(space, oracle, objectives=objectives, latency=latency)
        front = nsga2(
            problem,
            engine="pymoo",
            population=settings.population,
            generations=settings.generations,
            seed=settings.seed,
        )
        picks = front.spread(settings.verify)
        fronts.append(SearchFront(name, label, [front.configs[i] for i in picks]))
    return fronts


def equal_accuracy_speedup(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float, float] | None:
    """How much faster ``candidate``'s picks run than ``reference``'s at equal accuracy:
    for each reference accuracy, the fastest reference pick at least that accurate over the
    fastest candidate pick at least that accurate; (median, min, max) over the levels both
    reach, or None."""
    accuracy, latency = reference
    other_accuracy, other_latency = candidate
    ratios = []
    for level in np.unique(accuracy):
        mine = latency[accuracy >= level]
        theirs = other_latency[other_accuracy >= level]
        if len(mine) and len(theirs):
            ratios.append(float(mine.min() / theirs.min()))
    if not ratios:
        return None
    return float(np.median(ratios)), float(min(ratios)), float(max(ratios))


def search_comparison(
    checkpoint: Path,
    out: Path,
    settings: LatencyStudySettings,
    runtimes: Sequence[str],
    log: Callable[[str], None],
    *,
    device: str = "cpu",
) -> tuple[list[SearchFront], int, float]:
    """Part B: fronts searched against BitOPs and against each runtime's latency table on a
    trained supernet; every pick's accuracy measured on the supernet and latency measured on
    every runtime (all picks timed together in interleaved rounds). Returns the fronts, the
    scoring images and the median relative spread of the latency measurements."""
    from eqsearch.oracle import CachedOracle
    from supernet.evaluate import load_for_evaluation, supernet_oracle
    from supernet.runtimes import get_runtime
    from supernet.runtimes.exporting import Extractions, runtime_graph
    from supernet.runtimes.latency_build import LatencySettings, measure_wall

    supernet, _, evaluation = load_for_evaluation(str(checkpoint), split="holdout", device=device)
    supernet.eval()
    space = supernet.space
    measured = CachedOracle(supernet_oracle(supernet, evaluation), space)
    oracle = _accuracy_oracle(checkpoint, space, measured, log)
    tables = {
        runtime: cached_table(
            out / f"latency-trained-{runtime}.json",
            supernet,
            runtime,
            settings,
            settings.search_batch,
            log,
        )
        for runtime in runtimes
    }
    fronts = _fronts(supernet, oracle, tables, settings)
    picks: list[SubnetConfig] = list(dict.fromkeys(c for f in fronts for c in f.configs))
    accuracy = dict(zip(picks, np.asarray(measured.evaluate(picks), dtype=float), strict=True))
    spreads = []
    latency: dict[str, dict[SubnetConfig, float]] = {}
    for runtime in runtimes:
        engine = get_runtime(runtime)
        extractions = Extractions(supernet)
        graphs = [runtime_graph(supernet, c, engine, extractions=extractions) for c in picks]
        timing = LatencySettings(
            threads=settings.threads,
            batch=settings.search_batch,
            repeats=max(settings.repeats, 15),
            seed=settings.seed,
        )
        medians, spread = measure_wall(engine, supernet, graphs, timing)
        latency[runtime] = dict(zip(picks, medians.tolist(), strict=True))
        spreads.extend(spread.tolist())
        log(f"measured {len(picks)} picks on {runtime}")
    for front in fronts:
        front.accuracy = np.array([accuracy[c] for c in front.configs])
        front.latency = {r: np.array([latency[r][c] for c in front.configs]) for r in runtimes}
    for runtime in runtimes:
        floor = min(float(f.accuracy.min()) for f in fronts) - 1.0
        ceiling = max(float(f.latency[runtime].max()) for f in fronts) * 1.05
        for front in fronts:
            points = np.column_stack([-front.accuracy, front.latency[runtime]])
            front.hypervolume[runtime] = hypervolume(points, (-floor, ceiling))
            front.speedup[runtime] = equal_accuracy_speedup(
                (fronts[0].accuracy, fronts[0].latency[runtime]),
                (front.accuracy, front.latency[runtime]),
            )
    return fronts, len(evaluation.labels), float(np.median(spreads)) if spreads else math.nan


def _accuracy_oracle(
    checkpoint: Path, space: Any, measured: Any, log: Callable[[str], None]
) -> Any:
    """The predictor beside the checkpoint (what ``nsga`` uses), else the supernet itself."""
    from predictors import PredictorOracle, find_predictor, load_predictor

    path = find_predictor(checkpoint.parent)
    if path is not None:
        predictor = load_predictor(path)
        if predictor.space.fingerprint == space.fingerprint:
            log(f"searching with the predictor {path}")
            return PredictorOracle(predictor)
    log("searching with accuracy measured on the supernet (no predictor beside it)")
    return measured


def _proxy_markdown(rows: Sequence[ProxyRow]) -> list[str]:
    header = [
        "space",
        "runtime",
        "held-out",
        "ρ BitOPs",
        "ρ MACs",
        "ρ latency table",
        "median |error|",
        "p90 |error|",
        "spread",
        "build",
    ]

    def rho(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.3f}"

    cells = []
    for row in rows:
        cells.append(
            [
                f"{row.space} @ {row.table.key.image_size}",
                f"{row.runtime} {row.table.key.version}",
                f"{row.value('n'):.0f}",
                rho(row.value("bitops_spearman")),
                rho(row.value("macs_spearman")),
                f"**{rho(row.value('spearman'))}**",
                f"{100 * row.value('median_abs_error'):.1f} %",
                f"{100 * row.value('p90_abs_error'):.1f} %",
                f"{100 * row.table.spread:.0f} %",
                f"{row.table.seconds / 60:.1f} min",
            ]
        )
    return [markdown_table(cells, header)]


def _search_markdown(fronts: Sequence[SearchFront], runtimes: Sequence[str]) -> list[str]:
    header = ["front", "picks", "best accuracy"]
    for runtime in runtimes:
        header += [f"hypervolume ({runtime})", f"speed-up vs BitOPs picks ({runtime})"]
    cells = []
    for front in fronts:
        row = [front.label, str(len(front.configs)), f"{front.accuracy.max():.2f} %"]
        for runtime in runtimes:
            speedup = front.speedup.get(runtime)
            row.append(f"{front.hypervolume[runtime]:.2f}")
            row.append(
                "-"
                if speedup is None
                else f"{speedup[0]:.2f}× (range {speedup[1]:.2f}-{speedup[2]:.2f})"
            )
        cells.append(row)
    return [markdown_table(cells, header)]


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
        *_proxy_markdown(rows),
    ]
    if fronts:
        lines += [
            "",
            f"## Searched against BitOPs vs against latency ({supernet})",
            "",
            f"NSGA-II (pymoo, {chosen.population} × {chosen.generations}) for accuracy and "
            "BitOPs, and for accuracy and each runtime's latency table (batch "
            f"{chosen.search_batch}); {chosen.verify} picks spread over each front, each "
            f"exported for the runtime and timed (interleaved, {max(chosen.repeats, 15)} "
            f"rounds), its accuracy measured on {scoring} held-out images. Hypervolume in "
            "accuracy points × ms; speed-up: at each accuracy a BitOPs pick reaches, the "
            "fastest BitOPs pick at least that accurate over the fastest pick of the front.",
            "",
            *_search_markdown(fronts, runtimes),
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
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
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
    add("--population", type=positive_int, default=60, help="part B's NSGA-II population")
    add("--generations", type=positive_int, default=100, help="part B's NSGA-II generations")
    add("--verify", type=positive_int, default=12, help="part B's picks per front")
    add("--seed", type=seed_int, default=0, help="seeds the subnets and the searches")
    add("--device", default="cpu", help="torch device of the accuracy measurements")


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
        population=args.population,
        generations=args.generations,
        verify=args.verify,
        seed=args.seed,
    )
    study = run_latency_study(args.out, settings, supernet=args.supernet, device=args.device)
    print(study.markdown)
    print(f"wrote {study.report}, {study.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m studies.latency``."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    try:
        return run_from_args(parser.parse_args(argv))
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
