"""Merging the shard files of one sampling run into one samples file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text, check_output_file
from eqsearch.space import ElasticSpace
from predictors.samples.rows import SAMPLE_COLUMNS, format_row, recover_rows
from predictors.samples.sidecars import read_samples_space, record_space
from predictors.samples.source import SampleSource, read_samples_source, write_source


def merge_samples(paths: Sequence[str | Path], out_csv: str | Path, *, force: bool = False) -> Path:
    """Merge shard files into one samples file ordered by index (written atomically).

    The shards must come from one sampling run: the same supernet and scoring (their source
    sidecars agree), the same space, rows that agree on the config of every index, and
    together every row of the draw (the message lists what is missing). The merged file gets
    the space and source sidecars of the shards.

    Args:
        paths: the shard files.
        out_csv: the merged samples file; an existing samples file is replaced only with
            ``force``, and never a file of another kind.

    Raises:
        InputError: any of the above does not hold.
    """
    if not paths:
        raise InputError("merging needs at least one shard file")
    target = check_output_file(out_csv, kind="samples", force=force)
    merged: dict[int, dict[str, str]] = {}
    sources: list[tuple[Path, tuple[SampleSource, dict[str, Any]]]] = []
    spaces: list[tuple[Path, ElasticSpace]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"shard file not found: {path}")
        if path.resolve() == target.resolve():
            raise InputError(f"{path} is both a shard and the merged file; give another --out")
        for index, row in recover_rows(path).items():
            previous = merged.setdefault(index, row)
            if previous["config"] != row["config"]:
                raise InputError(
                    f"{path}: row index {index} disagrees with another shard's config (shards "
                    "of different sampling runs?)"
                )
        stored = read_samples_source(path)
        if stored is not None:
            sources.append((path, stored))
        space = read_samples_space(path)
        if space is not None:
            spaces.append((path, space))
    for path, (source, settings) in sources[1:]:
        first_path, (first_source, first_settings) = sources[0]
        if not first_source.same_measurement(source) or first_settings != settings:
            raise InputError(
                f"{path} and {first_path} were measured on different supernets or with "
                "different settings; merge the shards of one sampling run"
            )
    if len({space.fingerprint for _, space in spaces}) > 1:
        raise InputError("the shards record different spaces; merge the shards of one run")
    expected = int(sources[0][1][1]["n"]) if sources else (max(merged) + 1 if merged else 0)
    missing = sorted(set(range(expected)) - set(merged))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise InputError(
            f"the shards hold {len(merged)} of the draw's {expected} rows; missing indices "
            f"{shown} — finish every shard (rerun its eqsearch sample --shard i/n) first"
        )
    text = format_row(SAMPLE_COLUMNS) + "".join(
        format_row([merged[i][column] for column in SAMPLE_COLUMNS]) for i in sorted(merged)
    )
    if spaces:
        record_space(target, spaces[0][1])
    if sources:
        source, settings = sources[0][1]
        write_source(target, source, settings)
    atomic_write_text(target, text)
    return target
