"""The latency study's part A: latency tables of untrained spaces, and how proxies rank."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.latency.table import LatencyTable
from studies.front_search import FrontSearch
from studies.report import markdown_table

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
        search: NSGA-II (pymoo) of every search in part B, and its picks spread over each
            front, exported and measured (``verify``, at least 2).
        seed: seeds the tables' subnets and the searches.
    """

    spaces: tuple[str, ...] = ("oqa_mbv3", "resnet18")
    image_size: int = 224
    runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
    threads: int = 2
    holdout: int = 50
    repeats: int = 10
    search_batch: int = 64
    search: FrontSearch = FrontSearch(population=60, generations=100, verify=12)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "threads", "repeats", "search_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"LatencyStudySettings.{name} must be a positive integer")
        self.search.require_verify(2, "LatencyStudySettings")


@dataclass
class ProxyRow:
    """Part A: one space on one runtime."""

    space: str
    runtime: str
    table: LatencyTable

    def value(self, name: str) -> float:
        """A validation statistic of the table (NaN where missing)."""
        return float(self.table.validation.get(name, math.nan))


def available_runtimes(names: Sequence[str]) -> list[str]:
    """The runtimes of ``names`` installed here."""
    from supernet.deployment.runtimes import runtime_available

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
    from eqsearch.latency.settings import LatencySettings
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.exporting import input_size
    from supernet.deployment.runtimes.latency_build import build_latency_table
    from supernet.deployment.runtimes.probe import ProbeSettings, run_probe

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


def proxy_markdown(rows: Sequence[ProxyRow]) -> list[str]:
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
