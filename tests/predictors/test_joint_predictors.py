"""Predictors on a joint architecture × bits space: encoding, every backend, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eqsearch.space import JOINT_SPACE_VERSION, ElasticSpace
from predictors import (
    PREDICTORS,
    build_predictor,
    encode_configs,
    feature_count,
    feature_names,
    load_predictor,
    predictor_filename,
)
from predictors.encoding import features_per_layer
from predictors.samples.drawing import draw_configs
from tests.eqsearch.joint_fixtures import JointOracle, joint_space

FAST_OPTIONS = {
    "mlp": {"epochs": 80, "width": 32, "patience": 20},
    "xgboost": {"n_estimators": 80},
    "ridge": {},
}


@pytest.fixture(scope="module")
def space() -> ElasticSpace:
    return joint_space()


def test_encoding_one_hots_genes_and_zeroes_layers_that_do_not_run(space: ElasticSpace) -> None:
    per_layer = features_per_layer(space)
    searched = len(space.elastic_indices)
    assert feature_count(space) == searched * per_layer + 20  # 10 genes of 2 values
    names = feature_names(space)
    assert len(names) == feature_count(space) and names[-2:] == [
        "stage2.block2.kernel=3",
        "stage2.block2.kernel=5",
    ]
    shallow = space.uniform(
        4, 8, arch={"stage1.depth": 1, "stage2.depth": 1, "stage1.block1.kernel": 5}
    )
    features = encode_configs(space, [shallow])[0]
    blocks = features[: searched * per_layer].reshape(searched, per_layer)
    # searched layers: the projects of stage1.block1/2, stage2.block1/2
    assert blocks[[1, 3]].sum() == 0  # the skipped blocks' layer reads all zeros
    assert blocks[0].tolist() == [0, 1, 0, 0, 1, 1, 1, 1]  # w4, a8, channel/sym/sym
    genes = dict(zip(names[searched * per_layer :], features[searched * per_layer :], strict=True))
    assert genes["stage1.depth=1"] == 1 and genes["stage1.depth=2"] == 0
    assert genes["stage1.block1.kernel=5"] == 1 and genes["stage1.block1.kernel=3"] == 0
    assert genes["stage1.block2.kernel=3"] == genes["stage1.block2.kernel=5"] == 0


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_every_backend_fits_predicts_and_reloads_on_a_joint_space(
    name: str, space: ElasticSpace, tmp_path: Path
) -> None:
    import json

    batch = draw_configs(space, 400, seed=3)
    accuracy = JointOracle(space).evaluate(batch)
    predictor = build_predictor(name, space, seed=0, **FAST_OPTIONS[name])
    predictor.fit(batch[:320], accuracy[:320])
    predicted = predictor.predict(batch[320:])
    assert np.corrcoef(predicted, accuracy[320:])[0, 1] > 0.8
    path = predictor.save(tmp_path / predictor_filename(name))
    if path.suffix == ".json":
        assert json.loads(path.read_text())["version"] == JOINT_SPACE_VERSION
    loaded = load_predictor(path)
    assert loaded.space == space
    np.testing.assert_allclose(loaded.predict(batch[320:]), predicted, atol=1e-9)
    # configs of another joint space are refused
    other = joint_space(w_bits=(2, 8))
    with pytest.raises(ValueError, match="another space"):
        loaded.predict(other.sample(0, 3))
    with pytest.raises(ValueError, match="w_bits 4 is not in the space"):
        build_predictor(name, other).fit(list(batch[:10]), accuracy[:10])


def test_the_mlp_file_records_version_2(space: ElasticSpace, tmp_path: Path) -> None:
    import torch

    batch = draw_configs(space, 50, seed=0)
    predictor = build_predictor("mlp", space, epochs=2).fit(
        batch, JointOracle(space).evaluate(batch)
    )
    payload = torch.load(predictor.save(tmp_path / "p.pt"), weights_only=True)
    assert payload["version"] == JOINT_SPACE_VERSION
    assert ElasticSpace.from_dict(payload["space"]) == space
