"""What every predictor backend shares: the Predictor protocol, a base class, option parsing."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text
from eqsearch.space import READABLE_VERSIONS, ElasticSpace, SubnetConfig
from predictors.encoding import FeatureArray, encode_configs, feature_count

FloatArray = npt.NDArray[np.float64]

PREDICTOR_FORMAT = "eqsearch-predictor"
READABLE_PREDICTOR_VERSIONS = READABLE_VERSIONS


@runtime_checkable
class Predictor(Protocol):
    """An accuracy predictor fit on ``<config, accuracy>`` samples of one space."""

    @property
    def name(self) -> str:
        """The backend's registry name."""
        ...

    @property
    def space(self) -> ElasticSpace:
        """The space the predictor is fit on; configs of another space are refused."""
        ...

    def fit(self, configs: Sequence[SubnetConfig], accuracies: npt.ArrayLike) -> Predictor:
        """Fit on measured accuracies (percent); returns self."""
        ...

    def predict(self, configs: Sequence[SubnetConfig]) -> FloatArray:
        """Predicted accuracy in percent, one per config."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor (and its space) to ``path``; returns the path."""
        ...


OptionsT = TypeVar("OptionsT")


def parse_options(options_type: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """Build a backend's frozen options dataclass, naming unknown keys and allowed ones."""
    allowed = [field.name for field in dataclasses.fields(options_type)]  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(unknown)} for {options_type.__name__}; "
            f"allowed: {', '.join(allowed)}"
        )
    return options_type(**options)


def check_positive(owner: str, **values: float) -> None:
    """Raise ValueError naming the first field that is not a positive number."""
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
        ):
            raise InputError(f"{owner}.{name} must be a positive finite number; got {value!r}")


def check_threads(owner: str, threads: object) -> None:
    """Raise ValueError unless ``threads`` (the ``owner`` options' field) is an integer >= 0."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InputError(f"{owner}.threads must be an integer >= 0; got {threads!r}")


def check_fraction(owner: str, **values: float) -> None:
    """Raise ValueError naming the first field outside [0, 1)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise InputError(f"{owner}.{name} must be in [0, 1); got {value!r}")


class BasePredictor:
    """Encoding, space checks, target scaling and saving for the concrete backends.

    Subclasses set ``name``, ``extension`` and ``options_type`` (the frozen options dataclass
    the keyword options build) and implement ``_fit``, ``_predict``, ``_model_payload`` and
    ``_restore``; predictions and targets inside are standardised
    accuracies (zero mean, unit variance over the training set).
    """

    name: ClassVar[str] = ""
    extension: ClassVar[str] = "json"
    options_type: ClassVar[type[Any]]
    options: Any

    def __init__(self, space: ElasticSpace, *, seed: int = 0, **options: Any) -> None:
        if not isinstance(space, ElasticSpace):
            raise InputError(f"space must be an ElasticSpace; got {type(space).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an integer; got {seed!r}")
        self.space = space
        self.seed = seed
        self.target_mean = 0.0
        self.target_scale = 1.0
        self.fitted = False
        self.options = parse_options(self.options_type, options)

    # -- the public interface --------------------------------------------------------------

    def features(self, configs: SubnetConfig | Sequence[SubnetConfig]) -> FeatureArray:
        """Encoded configs (ValueError for configs of another space)."""
        return encode_configs(self.space, configs)

    def fit(self, configs: Sequence[SubnetConfig], accuracies: npt.ArrayLike) -> BasePredictor:
        """Fit on ``configs`` and their measured ``accuracies`` (percent); returns self."""
        features = self.features(configs)
        targets = np.asarray(accuracies, dtype=np.float64).ravel()
        if targets.shape[0] != features.shape[0]:
            raise InputError(f"got {features.shape[0]} configs but {targets.shape[0]} accuracies")
        if features.shape[0] < 2:
            raise InputError(f"a predictor needs at least 2 samples; got {features.shape[0]}")
        if not np.isfinite(targets).all():
            raise InputError("accuracies must be finite numbers")
        self.target_mean = float(targets.mean())
        spread = float(targets.std())
        self.target_scale = spread if spread > 0 else 1.0
        self._fit(features, (targets - self.target_mean) / self.target_scale)
        self.fitted = True
        return self

    def predict(self, configs: SubnetConfig | Sequence[SubnetConfig]) -> FloatArray:
        """Predicted accuracy in percent, one float64 per config."""
        if not self.fitted:
            raise InputError(f"the {self.name} predictor is not fitted; call fit() first")
        features = self.features(configs)
        if features.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        scaled = np.asarray(self._predict(features), dtype=np.float64).ravel()
        result: FloatArray = scaled * self.target_scale + self.target_mean
        return result

    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor atomically (``.pt`` via torch, else JSON)."""
        if not self.fitted:
            raise InputError(f"the {self.name} predictor is not fitted; nothing to save")
        target = Path(path)
        payload = {
            "format": PREDICTOR_FORMAT,
            # 1 for a space without architecture genes, 2 for a joint space
            "version": self.space.format_version,
            "backend": self.name,
            "space": self.space.to_dict(),
            "fingerprint": self.space.fingerprint,
            "seed": self.seed,
            "options": self.options_dict(),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "n_features": feature_count(self.space),
            "model": self._model_payload(),
        }
        self._write(payload, target)
        return target

    # -- backends --------------------------------------------------------------------------

    def options_dict(self) -> dict[str, Any]:
        """The backend's options as a JSON-able dict."""
        return dataclasses.asdict(self.options)

    def _fit(self, features: FeatureArray, targets: FloatArray) -> None:
        raise NotImplementedError

    def _predict(self, features: FeatureArray) -> npt.ArrayLike:
        raise NotImplementedError

    def _model_payload(self) -> Any:
        raise NotImplementedError

    def _restore(self, model: Any) -> None:
        raise NotImplementedError

    def _write(self, payload: dict[str, Any], target: Path) -> None:
        atomic_write_text(target, json.dumps(payload))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BasePredictor:
        """Rebuild a saved predictor (the dict ``save`` wrote)."""
        space = ElasticSpace.from_dict(payload["space"])
        predictor = cls(space, seed=int(payload.get("seed", 0)), **dict(payload["options"]))
        predictor.target_mean = float(payload["target_mean"])
        predictor.target_scale = float(payload["target_scale"])
        if not math.isfinite(predictor.target_scale) or predictor.target_scale <= 0:
            raise InputError("the saved predictor has an invalid target scale")
        predictor._restore(payload["model"])
        predictor.fitted = True
        return predictor
