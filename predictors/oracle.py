"""PredictorOracle: a fitted predictor as the search's accuracy oracle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, SubnetConfig
from predictors.base import Predictor

if TYPE_CHECKING:
    from predictors.provenance import PredictorSource


class PredictorOracle:
    """``evaluate(configs)``: predicted accuracy (percent) of a whole population in one call.

    Args:
        predictor: a fitted predictor; its space is the oracle's space.
        source: the file it was loaded from, which a search records (None: built in memory).
    """

    def __init__(self, predictor: Predictor, source: PredictorSource | None = None) -> None:
        self.predictor = predictor
        self.source = source
        self.space: ElasticSpace = predictor.space

    def evaluate(self, configs: Sequence[SubnetConfig]) -> npt.NDArray[np.float64]:
        """Predicted accuracies, one float64 per config (a ConfigBatch is read as arrays).

        Raises:
            InputError: the predictor gives a non-finite value (a damaged predictor): a
                search on it would return a meaningless front.
        """
        predicted = np.asarray(self.predictor.predict(configs), dtype=np.float64)
        if not np.isfinite(predicted).all():
            raise InputError(
                f"the {self.predictor.name} predictor gives non-finite accuracies for some "
                "configs; fit it again"
            )
        return predicted

    def __repr__(self) -> str:
        return f"PredictorOracle({self.predictor.name})"
