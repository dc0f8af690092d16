"""Predictor backends by name; building, loading and finding saved predictors."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.files import MAX_JSON_BYTES, FileFormat, parse_json, read_bytes
from eqsearch.registry import UNKNOWN_REGISTERED, Registry
from eqsearch.space import ElasticSpace
from predictors.base import PREDICTOR_FORMAT, READABLE_PREDICTOR_VERSIONS, BasePredictor
from predictors.mlp import MLPPredictor
from predictors.ridge import RidgePredictor
from predictors.xgb import XGBoostPredictor

PREDICTORS: Registry[type[BasePredictor]] = Registry(
    "predictor backend", unknown=UNKNOWN_REGISTERED
)
"""Every backend by name: ``"mlp"``, ``"xgboost"``, ``"ridge"``."""
for _backend in (MLPPredictor, XGBoostPredictor, RidgePredictor):
    PREDICTORS.add(_backend.name, _backend)

PREDICTOR_PREFIX = "predictor-"
PREDICTOR_FILE = FileFormat(
    PREDICTOR_FORMAT, READABLE_PREDICTOR_VERSIONS, "a saved eqsearch predictor", "predictor"
)


def backend_class(name: str) -> type[BasePredictor]:
    """The class registered as ``name`` (ValueError naming the registered ones)."""
    return PREDICTORS.lookup(name)


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
            with warnings.catch_warnings():
                # torch warns about a protocol-4 pickle before refusing it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for foreign or unsafe pickles
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            useful = [line for line in lines if "weights_only" not in line] or ["unsafe pickle"]
            raise InputError(
                f"{path} is not a saved predictor ({useful[0][:160]}); nothing in it was executed"
            ) from None
    try:
        return parse_json(read_bytes(path, limit=MAX_JSON_BYTES, what="predictor file"))
    except InputError as error:
        raise InputError(
            f"{path} is not a saved predictor (neither JSON nor a torch file: {error})"
        ) from None


PROBE_CONFIGS = 64
"""Configs a loaded predictor is asked about before it is trusted (all must be finite)."""


def load_predictor(path: str | Path) -> BasePredictor:
    """Load a predictor written by ``save`` (torch ``weights_only`` or JSON; never a pickle).

    Raises:
        ValueError: the file is missing or is not a saved eqsearch predictor (names the path).
    """
    location = Path(path)
    if not location.is_file():
        raise InputError(f"predictor file not found: {location}")
    payload = PREDICTOR_FILE.check(_read_payload(location), location)
    backend = payload.get("backend")
    if backend not in PREDICTORS:
        raise InputError(
            f"{location} holds an unknown backend {backend!r}; registered: {', '.join(PREDICTORS)}"
        )
    try:
        predictor = PREDICTORS[str(backend)].from_payload(payload)
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as error:
        # XGBoost's errors carry a C++ backtrace: its first line says what is wrong
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{location} is a damaged predictor file: {first[:200]}") from None
    with np.errstate(all="ignore"):  # damaged coefficients overflow: refused below
        probe = np.asarray(predictor.predict(predictor.space.sample(0, PROBE_CONFIGS)), dtype=float)
        absurd = ~np.isfinite(probe) | (np.abs(probe) > 1e6)
    if absurd.any():
        raise InputError(
            f"{location} predicts non-finite or absurd accuracies (e.g. "
            f"{float(probe[absurd][0])!r}); its coefficients are damaged — fit it again"
        )
    return predictor


def find_predictor(directory: str | Path) -> Path | None:
    """The predictor ``eqsearch fit-predictor`` saved in ``directory`` (newest if several)."""
    folder = Path(directory)
    if not folder.is_dir():
        return None
    extensions = {cls.extension for cls in PREDICTORS.values()}
    candidates = [
        path
        for path in folder.glob(f"{PREDICTOR_PREFIX}*")
        if path.is_file()
        and path.suffix.lstrip(".") in extensions
        and not path.name.endswith(".metrics.json")  # fit_predictor's report beside it
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime_ns, path.name))
