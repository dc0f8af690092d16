"""Fixtures of the predictor tests: a small space, a fake oracle, a tiny saved supernet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.space import ElasticSpace, SubnetConfig
from tests.conftest import make_space


class FormulaOracle:
    """A deterministic stand-in for the supernet: accuracy grows with the average bits."""

    def __init__(self, space: ElasticSpace) -> None:
        self.space = space
        self.calls = 0

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        self.calls += len(configs)
        batch = self.space.batch(configs)
        w = costs.average_weight_bits(self.space, batch)
        a = costs.average_activation_bits(self.space, batch)
        return 90.0 + 0.8 * w + 0.4 * a - 0.3 * (~batch.per_channel).mean(axis=1)


@pytest.fixture
def space() -> ElasticSpace:
    return make_space()


@pytest.fixture
def formula_oracle(space: ElasticSpace) -> FormulaOracle:
    return FormulaOracle(space)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_convnet supernet on the embedded 8×8 digits, quantizers initialised, untrained."""
    import torch

    from supernet import build_supernet, init_quantizers
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    spec = DataSpec("digits", holdout=200, eval_batch_size=200)
    data = build_data(spec, seed=0)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    init_quantizers(supernet, data.calibration_images(128))
    path = tmp_path_factory.mktemp("tiny-run") / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 64})
    return path
