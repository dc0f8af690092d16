"""Where a samples file's shards and sidecars lie, and the space sidecar that records its space."""

from __future__ import annotations

import re
from pathlib import Path

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text, read_json
from eqsearch.space import ElasticSpace

_SHARD_NAME = re.compile(r"^(?P<stem>.+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)$")


def shard_path(out_csv: str | Path, shard: tuple[int, int]) -> Path:
    """Where shard ``(i, n)`` writes: ``samples.shard-i-of-n.csv`` (``out_csv`` when n = 1)."""
    path = Path(out_csv)
    index, count = shard
    if count == 1:
        return path
    return path.with_name(f"{path.stem}.shard-{index}-of-{count}{path.suffix}")


def space_path(samples_csv: str | Path) -> Path:
    """The sidecar recording a samples file's space: ``samples.space.json``."""
    path = Path(samples_csv)
    match = _SHARD_NAME.match(path.stem)
    stem = match["stem"] if match else path.stem
    return path.with_name(f"{stem}.space.json")


def read_samples_space(samples_csv: str | Path) -> ElasticSpace | None:
    """The space recorded beside a samples file, or None when there is no sidecar."""
    sidecar = space_path(samples_csv)
    if not sidecar.is_file():
        return None
    data = read_json(sidecar, what="space file")
    try:
        return ElasticSpace.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{sidecar} is not a space file: {error}") from None


def source_path(samples_csv: str | Path) -> Path:
    """The sidecar recording what measured a samples (or shard) file: ``<name>.source.json``."""
    path = Path(samples_csv)
    return path.with_name(f"{path.stem}.source.json")


def record_space(samples_csv: Path, space: ElasticSpace) -> None:
    stored = read_samples_space(samples_csv)
    if stored is not None and stored.fingerprint != space.fingerprint:
        raise InputError(
            f"{space_path(samples_csv)} records another space (fingerprint "
            f"{stored.fingerprint}, this supernet's is {space.fingerprint}); use another --out"
        )
    if stored is None:
        atomic_write_text(space_path(samples_csv), space.to_json())
