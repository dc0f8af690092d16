"""The XGBoost backend: gradient-boosted trees, regression or a pairwise ranking objective."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.space import ElasticSpace
from predictors.base import BasePredictor, check_positive, check_threads
from predictors.encoding import FeatureArray

if TYPE_CHECKING:
    import xgboost

OBJECTIVES = ("regression", "ranking")

_sklearn_wrappers = True


def skip_sklearn_wrappers() -> None:
    """Import xgboost in this process without its scikit-learn wrappers (for a process that
    only uses boosters, like the ``eqsearch`` command line; call before the first predictor).

    xgboost imports scikit-learn whenever it is installed, for ``XGBRegressor`` and friends,
    and that (scipy.sparse and all) takes about 1.7 of xgboost's 2.0 s of import in
    ``eqsearch nsga`` on a busy machine. Boosters, which this backend uses, do not need it;
    ``XGBRegressor`` then lacks scikit-learn's estimator protocol in this process, which is
    why this is for processes that choose it.
    """
    global _sklearn_wrappers
    _sklearn_wrappers = False


def _xgboost() -> Any:
    """The xgboost module (see :func:`skip_sklearn_wrappers`)."""
    if _sklearn_wrappers or "xgboost" in sys.modules or "sklearn" in sys.modules:
        import xgboost

        return xgboost
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # xgboost sees an ImportError
    try:
        import xgboost
    finally:
        del sys.modules["sklearn"]
    return xgboost


@dataclass(frozen=True)
class XGBoostOptions:
    """Hyper-parameters of :class:`XGBoostPredictor`.

    Args:
        objective: ``"regression"`` (squared error) or ``"ranking"`` (pairwise ranking; the
            scores are then mapped to accuracy by a linear fit on the training rows).
        n_estimators: boosting rounds.
        max_depth: depth of each tree.
        learning_rate: shrinkage.
        subsample: rows drawn per tree (fraction, 1 keeps all).
        colsample_bytree: features drawn per tree.
        min_child_weight: smallest hessian sum of a leaf.
        reg_lambda: L2 regularisation of leaf weights.
        threads: worker threads (0: XGBoost's default, every core).
    """

    objective: str = "regression"
    n_estimators: int = 300
    max_depth: int = 3
    learning_rate: float = 0.1
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(
                f"XGBoostOptions.objective must be one of {', '.join(OBJECTIVES)}; "
                f"got {self.objective!r}"
            )
        require_positive_integers(self, ("n_estimators", "max_depth"), "XGBoostOptions.")
        check_threads("XGBoostOptions", self.threads)
        check_positive(
            "XGBoostOptions",
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
        )
        for name in ("subsample", "colsample_bytree"):
            if getattr(self, name) > 1:
                raise InputError(
                    f"XGBoostOptions.{name} must be in (0, 1]; got {getattr(self, name)}"
                )


class XGBoostPredictor(BasePredictor):
    """CQAP as gradient-boosted trees (XGBoost ``hist``), saved as XGBoost's JSON model."""

    name: ClassVar[str] = "xgboost"
    extension: ClassVar[str] = "json"
    options_type: ClassVar[type[Any]] = XGBoostOptions
    options: XGBoostOptions

    def __init__(self, space: ElasticSpace, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        self.booster: xgboost.Booster | None = None
        # ranking scores → standardised accuracy: scale·score + offset (identity for regression)
        self.score_scale = 1.0
        self.score_offset = 0.0

    def _params(self) -> dict[str, Any]:
        options = self.options
        params: dict[str, Any] = {
            "objective": "reg:squarederror"
            if options.objective == "regression"
            else "rank:pairwise",
            # every pair of the single query group, not only pairs around the top
            "lambdarank_pair_method": "mean",
            "lambdarank_num_pair_per_sample": 16,
            "tree_method": "hist",
            "max_depth": options.max_depth,
            "eta": options.learning_rate,
            "subsample": options.subsample,
            "colsample_bytree": options.colsample_bytree,
            "min_child_weight": options.min_child_weight,
            "lambda": options.reg_lambda,
            "seed": self.seed,
            "verbosity": 0,
        }
        if options.threads:
            params["nthread"] = options.threads
        return params

    def _fit(self, features: FeatureArray, targets: npt.NDArray[np.float64]) -> None:
        xgboost = _xgboost()
        matrix = xgboost.DMatrix(features, label=targets)
        if self.options.objective == "ranking":
            matrix.set_group([features.shape[0]])
        booster = xgboost.train(self._params(), matrix, num_boost_round=self.options.n_estimators)
        self.booster = booster
        self.score_scale, self.score_offset = 1.0, 0.0
        if self.options.objective == "ranking":
            scores = np.asarray(booster.inplace_predict(features), dtype=np.float64)
            spread = float(scores.std())
            if spread > 0:
                slope, intercept = np.polyfit(scores, targets, 1)
                self.score_scale, self.score_offset = float(slope), float(intercept)

    def _predict(self, features: FeatureArray) -> npt.ArrayLike:
        assert self.booster is not None  # fitted predictors have a booster
        scores = np.asarray(self.booster.inplace_predict(features), dtype=np.float64)
        return scores * self.score_scale + self.score_offset

    def _model_payload(self) -> Any:
        assert self.booster is not None
        raw = self.booster.save_raw(raw_format="json")
        return {
            "booster": bytes(raw).decode("utf-8"),
            "score_scale": self.score_scale,
            "score_offset": self.score_offset,
        }

    def _restore(self, model: Any) -> None:
        xgboost = _xgboost()
        booster = xgboost.Booster()
        booster.load_model(bytearray(str(model["booster"]).encode("utf-8")))
        if self.options.threads:
            # a saved model keeps no thread count: without this a loaded predictor predicts on
            # every core, and on a busy machine each call waits for them (59 ms against 2 ms
            # for 100 configs at load 9 on 2 cores: 29 s of a 500-generation search)
            booster.set_param({"nthread": self.options.threads})
        self.booster = booster
        self.score_scale = float(model["score_scale"])
        self.score_offset = float(model["score_offset"])
