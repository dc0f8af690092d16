"""The CQAP encoding: shape, exact one-hots, pinned layers left out, other spaces refused."""

from __future__ import annotations

import numpy as np
import pytest

from eqsearch.space import ElasticSpace, LayerChoice, QuantForm, SubnetConfig
from predictors import encode_configs, feature_count, feature_names
from tests.conftest import make_space


def test_shape_and_exact_one_hots(space: ElasticSpace) -> None:
    form_a = QuantForm("tensor", False, True)
    form_b = QuantForm("channel", True, False)
    config = SubnetConfig(
        (
            LayerChoice(8, 8, form_a),
            LayerChoice(3, 6, form_a),
            LayerChoice(7, 2, form_a),
            LayerChoice(8, 8, form_a),
        )
    )
    other = space.uniform(2, 8, form_b)
    features = encode_configs(space, [config, other])
    # 2 elastic layers × (7 weight bits + 7 activation bits + 3 flags)
    assert features.shape == (2, 34) == (2, feature_count(space))
    assert features.dtype == np.float32
    names = feature_names(space)
    on = {names[i] for i in np.flatnonzero(features[0])}
    assert on == {
        "conv2.w3",
        "conv2.a6",
        "conv2.a_symmetric",
        "fc1.w7",
        "fc1.a2",
        "fc1.a_symmetric",
    }
    on_other = {names[i] for i in np.flatnonzero(features[1])}
    assert on_other == {
        "conv2.w2",
        "conv2.a8",
        "conv2.per_channel",
        "conv2.w_symmetric",
        "fc1.w2",
        "fc1.a8",
        "fc1.per_channel",
        "fc1.w_symmetric",
    }
    assert not any(name.startswith(("conv1.", "fc2.")) for name in names)  # pinned: left out
    # every layer block holds exactly one weight-bit and one activation-bit one-hot
    blocks = features.reshape(2, 2, 17)
    assert (blocks[:, :, :7].sum(axis=2) == 1).all()
    assert (blocks[:, :, 7:14].sum(axis=2) == 1).all()


def test_batch_and_list_encode_alike(space: ElasticSpace) -> None:
    batch = space.sample(3, 50, forms="per_layer")
    assert np.array_equal(encode_configs(space, batch), encode_configs(space, list(batch)))
    assert encode_configs(space, batch[:0]).shape == (0, feature_count(space))


def test_configs_of_another_space_are_refused(space: ElasticSpace) -> None:
    narrow = make_space(w_bits=(2, 4), a_bits=(2, 4))
    with pytest.raises(ValueError, match=r"another space"):
        encode_configs(narrow, space.sample(0, 4))
    with pytest.raises(ValueError, match=r"w_bits 3"):
        encode_configs(narrow, [space.uniform(3, 4)])


def test_encoding_follows_the_space_bits() -> None:
    narrow = make_space(w_bits=(2, 4), a_bits=(4, 8))
    features = encode_configs(narrow, [narrow.uniform(4, 8)])
    assert features.shape == (1, 2 * (2 + 2 + 3))
    assert features[0, :4].tolist() == [0.0, 1.0, 0.0, 1.0]
