"""Small helpers for the studies' markdown reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def format_value(value: Any, precision: int = 4) -> str:
    """Numbers with ``precision`` significant digits, everything else as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{precision}g}"
    return str(value)


def markdown_table(
    rows: Sequence[Sequence[Any]], header: Sequence[str], *, precision: int = 4
) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(v, precision) for v in row) + " |")
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame, *, index: bool = True, precision: int = 4) -> str:
    """A DataFrame as a markdown table (the index as the first column when ``index``)."""
    header = ([str(frame.index.name or "")] if index else []) + [str(c) for c in frame.columns]
    rows = [
        ([label] if index else []) + list(values)
        for label, values in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    return markdown_table(rows, header, precision=precision)


def binomial_standard_error(accuracy_percent: float, images: int) -> float:
    """One standard error, in points, of a top-1 estimate at ``accuracy_percent`` on
    ``images`` images."""
    p = min(max(accuracy_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / images)
