"""What measured the rows of a samples file: the supernet by content and the scoring images."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text, read_json
from eqsearch.numbers import shown_text
from predictors.samples.settings import SamplingConfig
from predictors.samples.sidecars import source_path

SCORING_SPLITS = ("holdout", "test")
"""The images a sample is scored on: training images held out, or the test split."""
SOURCE_FORMAT = "eqsearch-samples-source"


@dataclass(frozen=True)
class SampleSource:
    """What measured the rows of a samples file: the supernet (by content) and the scoring.

    Args:
        supernet_sha256: SHA-256 of the checkpoint file (another epoch is another supernet).
        supernet: the checkpoint's path when sampled (for messages only).
        split, bn_images, holdout, val_images: the scoring images (see
            ``eqsearch.app.measure.sample_subnets``).
    """

    supernet_sha256: str
    supernet: str = ""
    split: str = "holdout"
    bn_images: int | None = None
    holdout: int | None = None
    val_images: int | None = None

    def __post_init__(self) -> None:
        digest = self.supernet_sha256
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InputError(f"supernet_sha256 must be 64 hex digits; got {shown_text(digest)}")
        if not isinstance(self.supernet, str):
            raise InputError(f"supernet must be a path; got {self.supernet!r}")
        if self.split not in SCORING_SPLITS:
            raise InputError(
                f"split must be one of {', '.join(SCORING_SPLITS)}; got {self.split!r}"
            )
        for name in ("bn_images", "holdout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(f"{name} must be a positive number of images; got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (``val_images`` only where it is set)."""
        data = dataclasses.asdict(self)
        if data["val_images"] is None:
            del data["val_images"]
        return data

    def same_measurement(self, other: SampleSource) -> bool:
        """Whether rows measured under ``other`` may share a file with these (the path may
        differ; the supernet's content and the scoring may not)."""
        return dataclasses.replace(other, supernet=self.supernet) == self


def read_samples_source(samples_csv: str | Path) -> tuple[SampleSource, dict[str, Any]] | None:
    """The source and drawing settings recorded beside a samples file (None: no sidecar)."""
    sidecar = source_path(samples_csv)
    if not sidecar.is_file():
        return None
    data = read_json(sidecar, what="samples source file")
    try:
        if data.get("format") != SOURCE_FORMAT:
            raise InputError("not a samples source file")
        source = SampleSource(**data["source"])
        settings = dict(data["settings"])
        SamplingConfig(**settings)  # the draw's n, seed, strategy and forms, checked
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{sidecar} is not a samples source file ({error})") from None
    return source, settings


def record_source(path: Path, source: SampleSource, settings: dict[str, Any]) -> None:
    """Record (or check) what measured the rows of ``path``."""
    stored = read_samples_source(path)
    if stored is not None:
        stored_source, stored_settings = stored
        if not stored_source.same_measurement(source):
            raise InputError(
                f"{path} holds subnets measured on another supernet or with other scoring "
                f"images ({stored_source.supernet or 'unknown'}, split {stored_source.split}); "
                "use another --out"
            )

        def drawn(values: dict[str, Any]) -> dict[str, Any]:
            return {key: value for key, value in values.items() if key != "n"}

        if drawn(stored_settings) != drawn(settings):  # a larger n extends the same draw
            raise InputError(
                f"{path} was drawn with other settings ({stored_settings}); use another --out "
                "or the original settings"
            )
        if stored_settings == settings:
            return
    write_source(path, source, settings)


def write_source(samples_csv: Path, source: SampleSource, settings: dict[str, Any]) -> None:
    """Write the source sidecar of ``samples_csv``: what measured its rows, drawn how."""
    payload = {"format": SOURCE_FORMAT, "source": source.to_dict(), "settings": settings}
    atomic_write_text(source_path(samples_csv), json.dumps(payload, indent=2) + "\n")
