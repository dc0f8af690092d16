"""CQAP accuracy predictors: encoding, sample datasets, backends, the predictor oracle."""

from predictors.base import BasePredictor, Predictor
from predictors.encoding import encode_configs, feature_count, feature_names
from predictors.metrics import (
    kendall_tau,
    pearson,
    prediction_metrics,
    rmse,
    spearman,
    top_k_precision,
)
from predictors.oracle import PredictorOracle
from predictors.registry import (
    PREDICTORS,
    build_predictor,
    find_predictor,
    load_predictor,
    predictor_filename,
)
from predictors.samples.collect import collect_samples
from predictors.samples.drawing import draw_configs, spread_sample
from predictors.samples.merge import merge_samples
from predictors.samples.reading import load_samples, split_indices
from predictors.samples.settings import SamplingConfig

__all__ = [
    "PREDICTORS",
    "BasePredictor",
    "Predictor",
    "PredictorOracle",
    "SamplingConfig",
    "build_predictor",
    "collect_samples",
    "draw_configs",
    "encode_configs",
    "feature_count",
    "feature_names",
    "find_predictor",
    "kendall_tau",
    "load_predictor",
    "load_samples",
    "merge_samples",
    "pearson",
    "prediction_metrics",
    "predictor_filename",
    "rmse",
    "spearman",
    "split_indices",
    "spread_sample",
    "top_k_precision",
]
