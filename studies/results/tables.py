"""One result table measured with several seeds: per-seed frames, their mean ± spread, and
the binomial standard error of the test set the accuracies were measured on."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text
from studies.report import binomial_standard_error, markdown_table


@dataclass(frozen=True)
class SeedTable:
    """One seed's measurement of a table.

    Args:
        frame: numeric cells (rows × columns); NaN where a cell has no value.
        images: the test images behind the accuracy cells (None: the table holds none).
        accuracy_columns: the columns that are top-1 accuracies in % (their binomial standard
            error is stated); empty with ``images`` None.
        precision: decimals of the report's cells.
    """

    frame: pd.DataFrame
    images: int | None = None
    accuracy_columns: tuple[str, ...] = ()
    precision: int = 2

    def __post_init__(self) -> None:
        if self.images is not None and (isinstance(self.images, bool) or self.images < 1):
            raise InputError(f"SeedTable.images must be a positive integer; got {self.images!r}")
        unknown = [c for c in self.accuracy_columns if c not in self.frame.columns]
        if unknown:
            raise InputError(f"SeedTable.accuracy_columns names no column: {unknown}")
        if self.accuracy_columns and self.images is None:
            raise InputError("SeedTable: accuracy columns need the number of test images")
        if isinstance(self.precision, bool) or not 0 <= self.precision <= 6:
            raise InputError(f"SeedTable.precision must be 0..6; got {self.precision!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (read back by :meth:`from_json`)."""
        frame = self.frame.astype(float)
        return {
            "index": [str(i) for i in frame.index],
            "columns": [str(c) for c in frame.columns],
            "values": [[None if math.isnan(v) else v for v in row] for row in frame.to_numpy()],
            "images": self.images,
            "accuracy_columns": list(self.accuracy_columns),
            "precision": self.precision,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeedTable:
        """The table :meth:`to_json` wrote."""
        values = [[math.nan if v is None else float(v) for v in row] for row in data["values"]]
        frame = pd.DataFrame(values, index=data["index"], columns=data["columns"])
        return cls(
            frame, data["images"], tuple(data["accuracy_columns"]), int(data.get("precision", 2))
        )


def numeric_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with string labels and float cells (what cannot be a number is NaN)."""
    result = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    result.index = [str(i) for i in result.index]
    result.columns = [str(c) for c in result.columns]
    return result


@dataclass(frozen=True)
class SeedRun:
    """One seed's run of a study: its tables, wall time, and the commit and date (UTC) it
    was measured at."""

    tables: dict[str, SeedTable]
    seconds: float
    commit: str
    date: str

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise InputError(f"SeedRun.seconds must be >= 0; got {self.seconds!r}")


def write_seed_run(path: Path, run: SeedRun) -> Path:
    """One seed's run as JSON (read back by :func:`read_seed_run`)."""
    data = {
        "seconds": run.seconds,
        "commit": run.commit,
        "date": run.date,
        "tables": {k: t.to_json() for k, t in run.tables.items()},
    }
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_seed_run(path: Path) -> SeedRun:
    """The run :func:`write_seed_run` wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    tables = {k: SeedTable.from_json(v) for k, v in data["tables"].items()}
    return SeedRun(tables, float(data["seconds"]), str(data["commit"]), str(data["date"]))


@dataclass(frozen=True)
class Aggregate:
    """A table over seeds: the mean, the standard deviation over seeds (NaN for one seed),
    and the binomial standard error of one accuracy at the table's median accuracy."""

    mean: pd.DataFrame
    spread: pd.DataFrame
    seeds: int
    images: int | None
    accuracy_columns: tuple[str, ...]
    standard_error: float | None
    median_accuracy: float | None
    precision: int = 2


def aggregate(tables: Sequence[SeedTable]) -> Aggregate:
    """Mean ± spread of the seeds' tables (aligned by labels; a cell missing in a seed counts
    as missing there)."""
    if not tables:
        raise InputError("aggregate needs at least one seed's table")
    first = tables[0]
    index = list(dict.fromkeys(i for t in tables for i in t.frame.index))
    columns = list(dict.fromkeys(c for t in tables for c in t.frame.columns))
    stack = np.stack([t.frame.reindex(index=index, columns=columns).to_numpy() for t in tables])
    counts = np.sum(~np.isnan(stack), axis=0)
    with np.errstate(invalid="ignore"):
        total = np.nansum(stack, axis=0)
        mean = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
        deviation = np.where(
            counts > 1,
            np.sqrt(np.nansum((stack - mean) ** 2, axis=0) / np.maximum(counts - 1, 1)),
            np.nan,
        )
    mean_frame = pd.DataFrame(mean, index=index, columns=columns)
    spread_frame = pd.DataFrame(deviation, index=index, columns=columns)
    error = median = None
    if first.images is not None and first.accuracy_columns:
        values = mean_frame[list(first.accuracy_columns)].to_numpy().ravel()
        values = values[~np.isnan(values)]
        if len(values):
            median = float(np.median(values))
            error = binomial_standard_error(median, first.images)
    return Aggregate(
        mean_frame,
        spread_frame,
        len(tables),
        first.images,
        first.accuracy_columns,
        error,
        median,
        max(t.precision for t in tables),
    )


def cell_text(mean: float, spread: float, precision: int) -> str:
    """``mean ± spread`` (``mean`` alone for one seed, ``-`` for no value)."""
    if math.isnan(mean):
        return "-"
    if math.isnan(spread):
        return f"{mean:.{precision}f}"
    return f"{mean:.{precision}f} ± {spread:.{precision}f}"


def aggregate_markdown(result: Aggregate) -> str:
    """The table as markdown (``mean ± standard deviation over seeds``) and its noise line."""
    precision = result.precision
    rows = [
        [label, *(cell_text(m, s, precision) for m, s in zip(means, spreads, strict=True))]
        for label, means, spreads in zip(
            result.mean.index,
            result.mean.to_numpy(),
            result.spread.to_numpy(),
            strict=True,
        )
    ]
    table = markdown_table(rows, ["", *result.mean.columns])
    return table + "\n\n" + noise_line(result)


def noise_line(result: Aggregate) -> str:
    """What separates a difference from noise in this table."""
    parts = []
    if result.seeds > 1:
        largest = float(np.nanmax(result.spread.to_numpy())) if result.spread.size else math.nan
        parts.append(
            f"Cells are mean ± standard deviation over {result.seeds} seeds (largest spread "
            f"{largest:.2f})."
        )
    else:
        parts.append("One seed: no spread over seeds is measured.")
    if result.standard_error is not None and result.images is not None:
        parts.append(
            f"Accuracies are measured on {result.images} images (grain "
            f"{100.0 / result.images:.3f} points); at the median accuracy "
            f"({result.median_accuracy:.2f} %) one binomial standard error is "
            f"±{result.standard_error:.2f} points."
        )
    if result.seeds > 1 or result.standard_error is not None:
        parts.append("Differences below about two of the larger of the two are within noise.")
    return " ".join(parts)


def noise_scale(result: Aggregate) -> float:
    """The larger of the binomial standard error and the largest spread over seeds (NaN
    when neither is known): the unit the report's 'within noise' refers to."""
    candidates = [] if result.standard_error is None else [result.standard_error]
    if result.seeds > 1 and result.spread.size:
        candidates.append(float(np.nanmax(result.spread.to_numpy())))
    return max(candidates) if candidates else math.nan
