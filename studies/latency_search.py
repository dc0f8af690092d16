"""The latency study's part B: fronts searched against BitOPs and against latency, measured."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqsearch.latency.table import LatencyTable
from eqsearch.pareto import hypervolume
from eqsearch.space import SubnetConfig
from studies.latency_tables import LatencyStudySettings, cached_table
from studies.report import markdown_table


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
            population=settings.search.population,
            generations=settings.search.generations,
            seed=settings.seed,
        )
        picks = front.spread(settings.search.verify)
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
    from eqsearch.latency.settings import LatencySettings
    from eqsearch.oracle import CachedOracle
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.exporting import Extractions, runtime_graph
    from supernet.deployment.runtimes.latency_build import measure_wall
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

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


def search_markdown(fronts: Sequence[SearchFront], runtimes: Sequence[str]) -> list[str]:
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
