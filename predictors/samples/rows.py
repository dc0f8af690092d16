"""The rows of a samples CSV: columns, fsync'd appends, recovery after a kill, accuracy checks."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.numbers import NumberError, parse_integer, parse_number, shown_text

SAMPLE_COLUMNS = ("index", "config", "w_bits", "a_bits", "bitops", "w_comp", "accuracy", "seconds")
"""Columns of a samples file: position in the seeded draw, config JSON, average weight and
activation bits, BitOPs, W-Comp, measured accuracy (%), seconds the oracle took."""


def format_row(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def recover_rows(path: Path) -> dict[int, dict[str, str]]:
    """Rows already in a samples file, by index; a torn last line (a kill mid-write) is cut off.

    Raises:
        ValueError: the file exists but is not a samples file (it is left untouched).
    """
    if not path.exists() or path.stat().st_size == 0:
        return {}
    data = path.read_bytes()
    header = format_row(SAMPLE_COLUMNS).encode()
    if not data.startswith(header):
        if header.startswith(data):
            return {}  # killed while writing the header
        raise InputError(
            f"{path} exists and is not a samples file of this version; not touching it"
        )
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as stream:
            stream.truncate(len(complete))
            stream.flush()
            os.fsync(stream.fileno())
    rows: dict[int, dict[str, str]] = {}
    reader = csv.DictReader(io.StringIO(complete.decode("utf-8", errors="replace")))
    for line, row in enumerate(reader, start=2):
        try:
            index = parse_integer(row["index"])
        except (TypeError, ValueError):
            raise InputError(
                f"{path} line {line}: bad index {shown_text(row.get('index'))}"
            ) from None
        check_accuracy(row.get("accuracy"), f"{path} line {line}")
        if index in rows:
            raise InputError(
                f"{path} line {line} repeats row index {index} (did two runs write into it?); "
                "fit-predictor refuses such a file: use another --out"
            )
        rows[index] = row
    return rows


def check_accuracy(value: str | None, where: str) -> float:
    """A measured accuracy: a finite percentage in [0, 100]."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "infinity"):
        raise InputError(f"{where}: accuracy {value!r} is not a percentage in 0..100")
    try:
        accuracy = parse_number(value)  # type: ignore[arg-type]
    except NumberError:
        raise InputError(f"{where}: accuracy {shown_text(value)} is not a number") from None
    if not 0.0 <= accuracy <= 100.0:
        raise InputError(f"{where}: accuracy {value!r} is not a percentage in 0..100")
    return accuracy


def append_header(stream: io.TextIOBase) -> None:
    """The header line of a new samples file, fsync'd before any row is written."""
    _write_synced(stream, format_row(SAMPLE_COLUMNS))


def append_row(
    stream: io.TextIOBase,
    index: int,
    config_json: str,
    table: dict[str, Any],
    accuracy: float,
    seconds: float,
) -> None:
    """One row, flushed and fsync'd before the next is written (a kill loses no written row)."""
    line = format_row(
        [
            index,
            config_json,
            repr(float(table["w_bits"][index])),
            repr(float(table["a_bits"][index])),
            repr(float(table["bitops"][index])),
            repr(float(table["w_comp"][index])),
            repr(accuracy),
            f"{seconds:.4f}",
        ]
    )
    _write_synced(stream, line)


def _write_synced(stream: io.TextIOBase, text: str) -> None:
    stream.write(text)
    stream.flush()
    os.fsync(stream.fileno())
