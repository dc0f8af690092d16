"""A cheap baseline: ridge regression on the encoded configs (per-layer additive effects)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace
from predictors.base import BasePredictor
from predictors.encoding import FeatureArray, feature_count


@dataclass(frozen=True)
class RidgeOptions:
    """Hyper-parameters of :class:`RidgePredictor`.

    Args:
        alpha: L2 penalty on the coefficients (on standardised targets).
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0 <= self.alpha < math.inf
        ):
            raise InputError(f"RidgeOptions.alpha must be a finite number >= 0; got {self.alpha!r}")


class RidgePredictor(BasePredictor):
    """Linear model of the one-hot features, solved in closed form; saved as JSON."""

    name: ClassVar[str] = "ridge"
    extension: ClassVar[str] = "json"
    options_type: ClassVar[type[Any]] = RidgeOptions
    options: RidgeOptions

    def __init__(self, space: ElasticSpace, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        self.coefficients = np.zeros(feature_count(space), dtype=np.float64)
        self.intercept = 0.0

    def _fit(self, features: FeatureArray, targets: npt.NDArray[np.float64]) -> None:
        x = features.astype(np.float64)
        centre = x.mean(axis=0)
        centred = x - centre
        gram = centred.T @ centred + self.options.alpha * np.eye(x.shape[1])
        # lstsq copes with the singular Gram matrix of alpha=0 (one-hot blocks are collinear)
        coefficients = np.linalg.lstsq(gram, centred.T @ targets, rcond=None)[0]
        self.coefficients = coefficients
        self.intercept = float(targets.mean() - centre @ coefficients)

    def _predict(self, features: FeatureArray) -> npt.ArrayLike:
        return features.astype(np.float64) @ self.coefficients + self.intercept

    def _model_payload(self) -> Any:
        return {"coefficients": self.coefficients.tolist(), "intercept": self.intercept}

    def _restore(self, model: Any) -> None:
        coefficients = np.asarray(model["coefficients"], dtype=np.float64)
        if coefficients.shape != (feature_count(self.space),):
            raise InputError("the saved ridge coefficients do not match the space's features")
        self.coefficients = coefficients
        self.intercept = float(model["intercept"])
