"""Space types: validation, JSON round-trip, sampling, genomes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqsearch.space import (
    ALL_FORMS,
    ConfigBatch,
    ElasticSpace,
    Granularity,
    LayerChoice,
    LayerSpec,
    QuantForm,
    SubnetConfig,
)
from tests.conftest import make_space


def test_quant_form_accepts_strings_and_parses_its_str() -> None:
    form = QuantForm("tensor", False, True)
    assert form.w_granularity is Granularity.TENSOR
    assert str(form) == "tensor-asym-sym"
    assert QuantForm.parse("tensor-asym-sym") == form
    assert len(set(ALL_FORMS)) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w_granularity": "row"}, "w_granularity"),
        ({"w_symmetric": 1}, "w_symmetric"),
        ({"a_symmetric": "yes"}, "a_symmetric"),
    ],
)
def test_quant_form_rejects_bad_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantForm(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["channel-sym", "layer-sym-sym", "channel-yes-no", ""])
def test_quant_form_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="GRANULARITY-WSYM-ASYM"):
        QuantForm.parse(text)


@pytest.mark.parametrize("bits", [1, 17, 0, 33, True, 4.0])
def test_layer_choice_rejects_bad_bits(bits: object) -> None:
    with pytest.raises(ValueError, match="w_bits"):
        LayerChoice(bits, 4)  # type: ignore[arg-type]


def test_layer_choice_full_precision() -> None:
    assert LayerChoice(32, 32).full_precision
    assert not LayerChoice(8, 8).full_precision


def test_subnet_config_json_round_trip(space: ElasticSpace) -> None:
    config = space.sample(3, forms="per_layer")
    text = config.to_json()
    assert SubnetConfig.from_json(text) == config
    assert json.loads(text)["choices"][0] == config.choices[0].to_dict()
    assert hash(SubnetConfig.from_json(text)) == hash(config)


@pytest.mark.parametrize(
    "text", ["[]", "{}", '{"choices": []}', '{"choices": [{"w_bits": 4}]}', "not json"]
)
def test_subnet_config_from_json_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        SubnetConfig.from_json(text)


def test_space_json_round_trip_and_fingerprint(space: ElasticSpace) -> None:
    restored = ElasticSpace.from_json(space.to_json())
    assert restored == space
    assert restored.fingerprint == space.fingerprint
    other = make_space(w_bits=(2, 4, 8))
    assert other.fingerprint != space.fingerprint


def test_space_normalises_fields() -> None:
    space = make_space(w_bits=(8, 2, 4, 4), granularities=("tensor",), a_symmetries=(False,))
    assert space.w_bits == (2, 4, 8)
    assert space.forms == (QuantForm("tensor", True, False), QuantForm("tensor", False, False))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w_bits": ()}, "w_bits"),
        ({"a_bits": (1, 2)}, "a_bits"),
        ({"granularities": ("row",)}, "granularities"),
        ({"w_symmetries": ()}, "w_symmetries"),
    ],
)
def test_space_rejects_bad_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_space(**kwargs)


def test_space_needs_an_elastic_layer() -> None:
    pinned = LayerSpec("a", "conv", 1, 1, 1, 1, pinned=(8, 8))
    with pytest.raises(ValueError, match="not pinned"):
        ElasticSpace((pinned,))


def test_layer_spec_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        LayerSpec("a", "rnn", 1, 1, 1, 1)
    with pytest.raises(ValueError, match="n_params"):
        LayerSpec("a", "conv", 0, 1, 1, 1)
    with pytest.raises(ValueError, match="full precision"):
        LayerSpec("a", "conv", 1, 1, 1, 1, pinned=(32, 8))


def test_largest_smallest_uniform_respect_pins(space: ElasticSpace) -> None:
    largest = space.largest()
    smallest = space.smallest(QuantForm("tensor", False, False))
    assert [c.w_bits for c in largest] == [8, 8, 8, 8]
    assert [c.w_bits for c in smallest] == [8, 2, 2, 8]
    assert [c.a_bits for c in smallest] == [8, 2, 2, 8]
    assert smallest.uniform_form == QuantForm("tensor", False, False)
    assert [c.w_bits for c in space.uniform(3, 5)] == [8, 3, 3, 8]
    assert [c.a_bits for c in space.uniform(3, 5)] == [8, 5, 5, 8]
    with pytest.raises(ValueError, match="w_bits 9"):
        space.uniform(9, 4)


def test_validate_names_the_problem(space: ElasticSpace) -> None:
    good = space.largest()
    with pytest.raises(ValueError, match="3 layer choices but the space has 4"):
        space.validate(SubnetConfig(good.choices[:3]))
    bad_bits = SubnetConfig((good.choices[0], LayerChoice(9, 4), *good.choices[2:]))
    with pytest.raises(ValueError, match=r"layer 1 \('conv2'\): w_bits 9"):
        space.validate(bad_bits)
    bad_pin = SubnetConfig((LayerChoice(4, 4), *good.choices[1:]))
    with pytest.raises(ValueError, match="pinned to w8/a8"):
        space.validate(bad_pin)
    narrow = make_space(granularities=("channel",))
    with pytest.raises(ValueError, match="tensor-sym-sym is not in this space"):
        narrow.validate(space.largest(QuantForm("tensor", True, True)))


def test_full_precision_pins() -> None:
    layers = (
        LayerSpec("a", "conv", 10, 10, 10, 2, pinned=(32, 32)),
        LayerSpec("b", "conv", 10, 10, 10, 2),
    )
    space = ElasticSpace(layers)
    config = space.smallest()
    assert config.choices[0].full_precision
    space.validate(config)


def test_sampling_is_seeded_and_covers_bits(space: ElasticSpace) -> None:
    first = space.sample(np.random.default_rng(7), 200)
    again = space.sample(np.random.default_rng(7), 200)
    assert first.keys() == again.keys()
    elastic = first.w_bits[:, list(space.elastic_indices)]
    assert set(np.unique(elastic)) == set(space.w_bits)
    # pinned layers always keep their pins
    assert (first.w_bits[:, 0] == 8).all() and (first.a_bits[:, 3] == 8).all()
    for config in first[:20]:
        space.validate(config)


def test_sampling_forms_global_versus_per_layer(space: ElasticSpace) -> None:
    global_forms = space.sample(1, 100, forms="global")
    assert (global_forms.form_index == global_forms.form_index[:, :1]).all()
    assert len(np.unique(global_forms.form_index[:, 0])) == 8
    per_layer = space.sample(1, 100, forms="per_layer")
    assert (per_layer.form_index != per_layer.form_index[:, :1]).any()
    fixed = space.sample(1, 10, form=QuantForm("tensor", True, False))
    assert all(config.uniform_form == QuantForm("tensor", True, False) for config in fixed)


def test_config_batch_is_a_sequence(space: ElasticSpace) -> None:
    batch = space.sample(2, 5)
    assert len(batch) == 5
    assert isinstance(batch[1], SubnetConfig)
    sliced = batch[1:3]
    assert isinstance(sliced, ConfigBatch) and list(sliced) == list(batch)[1:3]
    assert space.batch(list(batch)).keys() == batch.keys()
    assert (
        batch.per_channel == np.array([[c.form.per_channel for c in cfg] for cfg in batch])
    ).all()
    assert (batch.w_symmetric == [[c.form.w_symmetric for c in cfg] for cfg in batch]).all()
    assert (batch.a_symmetric == [[c.form.a_symmetric for c in cfg] for cfg in batch]).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), per_layer=st.booleans(), fixed=st.booleans())
def test_genome_round_trip(seed: int, per_layer: bool, fixed: bool) -> None:
    space = make_space()
    form = QuantForm("channel", True, False) if fixed else None
    configs = space.sample(seed, 8, forms="per_layer" if per_layer else "global", form=form)
    layout = space.genome_layout(form, per_layer=per_layer)
    genomes = layout.encode(configs)
    assert genomes.shape == (8, layout.n_genes)
    assert (genomes >= layout.lower).all() and (genomes <= layout.upper).all()
    assert layout.decode(genomes).keys() == configs.keys()


def test_genome_layout_shapes(space: ElasticSpace) -> None:
    assert space.genome_layout(QuantForm()).n_genes == 4  # 2 elastic layers × (w, a)
    assert space.genome_layout(None).n_genes == 5  # + one global form gene
    assert space.genome_layout(None, per_layer=True).n_genes == 8  # + one per layer
    lower, upper = space.genome_bounds(None)
    assert list(upper) == [6, 6, 6, 6, 7]
    assert list(lower) == [0] * 5


def test_genome_decode_clips_and_rejects_wrong_width(space: ElasticSpace) -> None:
    layout = space.genome_layout(QuantForm())
    decoded = layout.decode(np.array([[-3, 99, 0.4, 5.6]]))
    assert [c.w_bits for c in decoded[0]] == [8, 2, 8, 8]
    assert [c.a_bits for c in decoded[0]] == [8, 2, 8, 8]
    with pytest.raises(ValueError, match="shape"):
        layout.decode(np.zeros((2, 3)))


def test_genome_encode_rejects_forms_outside_layout(space: ElasticSpace) -> None:
    layout = space.genome_layout(QuantForm("channel", True, True))
    with pytest.raises(ValueError, match="outside this genome's forms"):
        layout.encode(space.batch(space.largest(QuantForm("tensor", True, True))))
    global_layout = space.genome_layout(None)
    with pytest.raises(ValueError, match="one global form gene"):
        global_layout.encode(space.sample(0, 20, forms="per_layer"))
