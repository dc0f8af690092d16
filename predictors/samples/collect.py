"""Measuring a draw's subnets into a samples file: locked, resumable, sharded."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.files import check_output_file, exclusive_writer, sniff_kind
from eqsearch.oracle import AccuracyOracle
from eqsearch.space import ConfigBatch, ElasticSpace, SubnetConfig
from predictors.samples.drawing import draw_configs
from predictors.samples.merge import merge_samples
from predictors.samples.rows import append_header, append_row, recover_rows
from predictors.samples.settings import SamplingConfig, draw_settings
from predictors.samples.sidecars import record_space, shard_path, source_path, space_path
from predictors.samples.source import SampleSource, record_source


@dataclass(frozen=True)
class SampleRun:
    """What a sampling call did.

    Attributes:
        path: the file this process appended to (a shard file when sharded).
        rows: rows in that file now.
        new_rows: rows this call added.
        seconds: wall time of this call.
        merged: the merged samples file, when this call completed the last shard.
    """

    path: Path
    rows: int
    new_rows: int
    seconds: float
    merged: Path | None


def check_samples_target(path: str | Path, *, with_source: bool = False) -> Path:
    """Check before any work that ``path`` can receive samples: missing, empty, or a samples
    file to resume (never another kind of file, nor one whose rows have no recorded space,
    or with ``with_source`` no recorded source).

    Raises:
        InputError: ``path`` is a directory or holds something other than samples, or a
            samples file without the sidecars that say what measured it.
    """
    target = Path(path)
    if target.exists() and not target.is_file():
        raise InputError(f"{target} exists and is not a regular file")
    if target.is_file():
        if target.stat().st_size > 0 and sniff_kind(target) != "samples":
            raise InputError(
                f"{target} exists and is not a samples file of this version; not touching it"
            )
        if target.stat().st_size > 0:
            needed = (space_path(target), source_path(target))[: 2 if with_source else 1]
            missing = [sidecar.name for sidecar in needed if not sidecar.is_file()]
            if missing:
                raise InputError(
                    f"{target} has no {' or '.join(missing)} beside it: nothing shows which "
                    "supernet and space measured its rows, so it is not resumed; use another --out"
                )
        return target
    return check_output_file(target, kind="samples")


def collect_samples(
    oracle: AccuracyOracle,
    space: ElasticSpace,
    out_csv: str | Path,
    config: SamplingConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    source: SampleSource | None = None,
) -> SampleRun:
    """Evaluate this shard's configs with ``oracle``, appending one fsync'd row per subnet.

    Rows already present are kept and skipped, so a rerun after any interruption (even
    ``kill -9``) finishes the file without losing or duplicating rows. While it runs the file
    is locked: a second process sampling into it is refused at once. When the last shard
    completes, the shards are merged into ``out_csv``.

    Args:
        oracle: scores configs (the supernet oracle in ``eqsearch.app.measure``).
        space: the space to draw from.
        out_csv: the samples file (shards write beside it, see :func:`shard_path`).
        config: how many configs, drawn how, which shard.
        progress: called with (rows done, rows of this shard) after each row.
        source: what measures the rows; recorded beside the file, and a file measured by
            another supernet or scoring is refused.

    Raises:
        InputError: the file holds rows drawn with other settings, of another space or
            another source, or another process is writing it.
    """
    started = time.perf_counter()
    path = shard_path(out_csv, config.shard)
    check_samples_target(path, with_source=source is not None)
    with exclusive_writer(path, what="samples file"):
        run = _collect_locked(oracle, space, Path(out_csv), path, config, progress, source)
    return dataclasses.replace(run, seconds=time.perf_counter() - started)


def _collect_locked(
    oracle: AccuracyOracle,
    space: ElasticSpace,
    out_csv: Path,
    path: Path,
    config: SamplingConfig,
    progress: Callable[[int, int], None] | None,
    source: SampleSource | None,
) -> SampleRun:
    configs = draw_configs(
        space, config.n, seed=config.seed, strategy=config.strategy, forms=config.forms
    )
    shard_index, shard_count = config.shard
    mine = np.arange(shard_index, config.n, shard_count)
    existing = recover_rows(path)
    expected_json = {int(i): configs[int(i)].to_json() for i in mine}
    for index, row in existing.items():
        if expected_json.get(index) != row.get("config"):
            raise InputError(
                f"{path} holds row index {index} that this draw (n={config.n}, seed={config.seed}, "
                f"strategy={config.strategy}, forms={config.forms}, shard {shard_index}/"
                f"{shard_count}) does not produce; use another --out or the original settings"
            )
    todo = [int(i) for i in mine if int(i) not in existing]
    record_space(out_csv, space)
    if source is not None:
        record_source(path, source, draw_settings(config))
    table = costs.cost_table(space, configs)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = len(mine) - len(todo)
    if progress is not None:
        progress(done, len(mine))
    with path.open("a", encoding="utf-8") as stream:
        if path.stat().st_size == 0:
            append_header(stream)
        measurements = _measure_in_order(oracle, configs.take(np.asarray(todo, dtype=np.int64)))
        try:
            for index, (accuracy, seconds) in zip(todo, measurements, strict=True):
                if not np.isfinite(accuracy) or not 0.0 <= accuracy <= 100.0:
                    raise RuntimeError(
                        f"the oracle measured {accuracy!r} % for row {index} of {path}; the "
                        "rows before it are kept (is the supernet diverged?)"
                    )
                append_row(stream, index, expected_json[index], table, accuracy, seconds)
                done += 1
                if progress is not None:
                    progress(done, len(mine))
        finally:
            close = getattr(measurements, "close", None)
            if close is not None:
                close()
    merged = None
    if shard_count > 1:
        shards = [shard_path(out_csv, (i, shard_count)) for i in range(shard_count)]
        if all(
            _shard_complete(p, len(range(i, config.n, shard_count))) for i, p in enumerate(shards)
        ):
            merged = merge_samples(shards, out_csv, force=True)
    return SampleRun(path, len(mine), len(todo), 0.0, merged)


@runtime_checkable
class OrderedOracle(Protocol):
    """An oracle that measures a batch of configs as a stream: ``(accuracy %, seconds)`` per
    config, in order, as each completes (``SupernetOracle`` over worker processes)."""

    def measure_in_order(
        self, configs: Sequence[SubnetConfig]
    ) -> Iterator[tuple[float, float]]: ...


def _measure_in_order(
    oracle: AccuracyOracle, configs: ConfigBatch
) -> Iterator[tuple[float, float]]:
    """``(accuracy, seconds)`` of each config in order: the oracle's own stream, or one
    ``evaluate`` call per config."""
    if isinstance(oracle, OrderedOracle):
        return oracle.measure_in_order(configs)
    return (_timed_evaluate(oracle, configs.take([row])) for row in range(len(configs)))


def _timed_evaluate(oracle: AccuracyOracle, config: ConfigBatch) -> tuple[float, float]:
    tick = time.perf_counter()
    accuracy = float(np.asarray(oracle.evaluate(config))[0])
    return accuracy, time.perf_counter() - tick


def _shard_complete(path: Path, expected: int) -> bool:
    if not path.is_file():
        return False
    try:
        return len(recover_rows(path)) >= expected
    except ValueError:
        return False
