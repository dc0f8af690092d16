"""Which predictor file a search used: its path, backend, content hash and held-out Kendall τ."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import file_sha256, read_json
from predictors.fitting import metrics_path

LOW_TAU = 0.3
"""Held-out Kendall τ below which a search on the predictor is warned about: its ranking of
configs is then little better than chance, and so is the front it leads to."""


@dataclass(frozen=True)
class PredictorSource:
    """A saved predictor as a search records it.

    Attributes:
        path: the file, relative to the checkpoint's directory when it was found there, else
            as the user gave it.
        backend: the backend's registry name (``mlp``, ``xgboost``, ``ridge``).
        sha256: SHA-256 of the file's bytes.
        tau: Kendall τ on the held-out samples, from the ``.metrics.json`` that
            ``fit-predictor`` wrote beside it; None when there is no such report.
    """

    path: str
    backend: str
    sha256: str
    tau: float | None

    @property
    def low(self) -> bool:
        """Whether the held-out τ is known and below :data:`LOW_TAU`."""
        return self.tau is not None and self.tau < LOW_TAU

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able record (``pareto.json``'s ``info.predictor``)."""
        return {"path": self.path, "backend": self.backend, "sha256": self.sha256, "tau": self.tau}

    def describe(self) -> str:
        """One line for the console: path, backend and held-out τ."""
        tau = "no held-out metrics beside it" if self.tau is None else f"held-out τ {self.tau:.2f}"
        return f"{self.path} ({self.backend}, {tau})"

    def warning(self) -> str | None:
        """The warning a search on this predictor prints, or None when its τ is fine."""
        if not self.low:
            return None
        return (
            f"predictor {self.path} ranks held-out subnets with Kendall τ {self.tau:.2f} (below "
            f"{LOW_TAU}); its front may be little better than chance: sample more subnets, try "
            "another --backend, or check the front with --verify K"
        )


def held_out_tau(path: str | Path) -> float | None:
    """Kendall τ of the ``.metrics.json`` report beside a predictor file (None without one,
    or when the report holds no finite τ)."""
    report = metrics_path(path)
    if not report.is_file():
        return None
    try:
        data = read_json(report, what="predictor metrics file")
    except InputError:
        return None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    value = metrics.get("kendall_tau") if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def predictor_source(
    path: str | Path, backend: str, *, relative_to: str | Path | None = None
) -> PredictorSource:
    """The record of the predictor file ``path`` (of ``backend``).

    Args:
        path: the predictor file.
        backend: its backend's name (the loaded predictor's ``name``).
        relative_to: record the path relative to this directory (the checkpoint's, where the
            file was found); None records it as given.
    """
    location = Path(path)
    shown = str(location)
    if relative_to is not None:
        try:
            shown = location.relative_to(Path(relative_to)).as_posix()
        except ValueError:
            shown = str(location)
    return PredictorSource(shown, backend, file_sha256(location), held_out_tau(location))
