"""Predictor backends by name; building, loading and finding saved predictors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from eqsearch.space import ElasticSpace
from predictors.base import PREDICTOR_FORMAT, READABLE_PREDICTOR_VERSIONS, BasePredictor
from predictors.mlp import MLPPredictor
from predictors.ridge import RidgePredictor
from predictors.xgb import XGBoostPredictor

PREDICTORS: dict[str, type[BasePredictor]] = {
    MLPPredictor.name: MLPPredictor,
    XGBoostPredictor.name: XGBoostPredictor,
    RidgePredictor.name: RidgePredictor,
}
"""Every backend by name: ``"mlp"``, ``"xgboost"``, ``"ridge"``."""

PREDICTOR_PREFIX = "predictor-"


def backend_class(name: str) -> type[BasePredictor]:
    """The class registered as ``name`` (ValueError naming the registered ones)."""
    try:
        return PREDICTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown predictor backend {name!r}; registered: {', '.join(PREDICTORS)}"
        ) from None


def build_predictor(
    name: str, space: ElasticSpace, *, seed: int = 0, **options: Any
) -> BasePredictor:
    """An unfitted predictor of backend ``name`` for ``space``.

    Args:
        name: a key of :data:`PREDICTORS`.
        space: the space whose configs it will score.
        seed: seeds every random choice of fitting.
        options: backend hyper-parameters (see ``MLPOptions``, ``XGBoostOptions``,
            ``RidgeOptions``); unknown ones are a ValueError.
    """
    return backend_class(name)(space, seed=seed, **options)


def predictor_filename(name: str) -> str:
    """The file name ``eqsearch fit-predictor`` gives a backend: ``predictor-<name>.<ext>``."""
    return f"{PREDICTOR_PREFIX}{name}.{backend_class(name).extension}"


def _read_payload(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for foreign or unsafe pickles
            raise ValueError(f"{path} is not a saved predictor: {error}") from None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(
            f"{path} is not a saved predictor (neither JSON nor a torch file)"
        ) from None


def load_predictor(path: str | Path) -> BasePredictor:
    """Load a predictor written by ``save`` (torch ``weights_only`` or JSON; never a pickle).

    Raises:
        ValueError: the file is missing or is not a saved eqsearch predictor (names the path).
    """
    location = Path(path)
    if not location.is_file():
        raise ValueError(f"predictor file not found: {location}")
    payload = _read_payload(location)
    if not isinstance(payload, dict) or payload.get("format") != PREDICTOR_FORMAT:
        raise ValueError(f"{location} is not a saved eqsearch predictor")
    if payload.get("version") not in READABLE_PREDICTOR_VERSIONS:
        readable = ", ".join(map(str, READABLE_PREDICTOR_VERSIONS))
        raise ValueError(
            f"{location} is predictor format version {payload.get('version')!r}; this version "
            f"reads {readable}"
        )
    backend = payload.get("backend")
    if backend not in PREDICTORS:
        raise ValueError(
            f"{location} holds an unknown backend {backend!r}; registered: {', '.join(PREDICTORS)}"
        )
    try:
        return PREDICTORS[str(backend)].from_payload(payload)
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{location} is a damaged predictor file: {error}") from None


def find_predictor(directory: str | Path) -> Path | None:
    """The predictor ``eqsearch fit-predictor`` saved in ``directory`` (newest if several)."""
    folder = Path(directory)
    if not folder.is_dir():
        return None
    extensions = {cls.extension for cls in PREDICTORS.values()}
    candidates = [
        path
        for path in folder.glob(f"{PREDICTOR_PREFIX}*")
        if path.is_file() and path.suffix.lstrip(".") in extensions
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime_ns, path.name))
