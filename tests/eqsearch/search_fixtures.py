"""An enumerable space with an analytic accuracy oracle, for exact fronts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eqsearch.problem import (
    SearchProblem,
    accuracy_objective,
    bitops_objective,
    weight_bits_budget,
)
from eqsearch.space import ConfigBatch, ElasticSpace, LayerSpec, QuantForm, SubnetConfig

TENSORRT = QuantForm("channel", True, True)


def enumerable_space() -> ElasticSpace:
    """Four elastic layers (W bits 2,3,4,8; A bits 2,4,8) between two pinned 8/8 layers:
    4⁴·3⁴ = 20,736 configs per form."""
    layers = (
        LayerSpec("stem", "conv", 432, 86_400, 3_072, 16, pinned=(8, 8)),
        LayerSpec("b1", "conv", 2_304, 460_800, 4_096, 16),
        LayerSpec("b2", "conv", 4_608, 230_400, 4_096, 32),
        LayerSpec("b3", "conv", 18_432, 115_200, 2_048, 64),
        LayerSpec("b4", "linear", 36_864, 36_864, 4_096, 9),
        LayerSpec("head", "linear", 640, 640, 64, 10, pinned=(8, 8)),
    )
    return ElasticSpace(layers, w_bits=(2, 3, 4, 8), a_bits=(2, 4, 8))


class AnalyticOracle:
    """Accuracy falls with each layer's quantization noise (≈ 4^-bits), more for sensitive
    layers; per-tensor weights and asymmetric forms cost a little."""

    W_SENSITIVITY = np.array([0.0, 10.0, 6.0, 3.0, 1.5, 0.0])
    A_SENSITIVITY = np.array([0.0, 8.0, 4.5, 2.5, 2.0, 0.0])

    def __init__(self, space: ElasticSpace) -> None:
        self.space = space
        self.calls = 0

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        self.calls += 1
        batch = configs if isinstance(configs, ConfigBatch) else self.space.batch(configs)
        noise = (self.W_SENSITIVITY * 4.0 ** (2 - batch.w_bits)).sum(axis=1)
        noise += (self.A_SENSITIVITY * 4.0 ** (2 - batch.a_bits)).sum(axis=1)
        noise += 0.7 * (~batch.per_channel).mean(axis=1) + 0.3 * (~batch.a_symmetric).mean(axis=1)
        noise += 0.2 * (~batch.w_symmetric).mean(axis=1)
        return 99.0 - noise


def all_genomes(problem: SearchProblem) -> np.ndarray:
    """Every genome of the problem's layout."""
    ranges = [
        range(int(lo), int(hi) + 1)
        for lo, hi in zip(problem.layout.lower, problem.layout.upper, strict=True)
    ]
    return np.asarray(list(itertools.product(*ranges)), dtype=np.int64)


def problem_under_budget(w_bits: float = 3.5, forms: object = TENSORRT) -> SearchProblem:
    """Accuracy (max) and BitOPs (min) with average weight bits <= ``w_bits``."""
    space = enumerable_space()
    return SearchProblem(
        space,
        [accuracy_objective(AnalyticOracle(space)), bitops_objective()],
        [weight_bits_budget(w_bits)],
        forms=forms,  # type: ignore[arg-type]
    )


def space_only_checkpoint(directory: Path, space: ElasticSpace | None = None) -> Path:
    """``directory/run/supernet.pt``: a checkpoint with a space (default
    :func:`enumerable_space`) and no weights, enough for a search that measures nothing."""
    import torch

    path = directory / "run" / "supernet.pt"
    path.parent.mkdir()
    payload = {
        "format": "eqsearch-supernet",
        "version": 1,
        "kind": "supernet",
        "build_info": {"model": "enumerable"},
        "space": (space or enumerable_space()).to_dict(),
        "state_dict": {},
    }
    torch.save(payload, path)
    return path
