"""SpaceSpec: the one description of what a supernet serves (torch-free)."""

from __future__ import annotations

import json

import pytest

from eqsearch.space.spec import SPACE_FLAGS, SpaceSpec, parse_first_last


def test_round_trips_through_json_and_normalises() -> None:
    spec = SpaceSpec(
        quantizer="n2uq",
        w_bits=(8, 2, 4, 4),
        granularities=("channel",),
        a_symmetries=(False,),
        first_last="fp",
        architecture={"kernels": (7, 3, 5), "depths": (2, 3, 4)},
    )
    assert spec.w_bits == (2, 4, 8) and spec.pin == (32, 32)
    assert spec.architecture_options == {"depths": (2, 3, 4), "kernels": (3, 5, 7)}
    data = json.loads(json.dumps(spec.to_dict()))
    assert SpaceSpec.from_dict(data) == spec
    assert "architecture" not in SpaceSpec().to_dict()
    resolved = SpaceSpec().resolved(["channel", "tensor"], [True], [True, False])
    assert resolved.granularities == ("channel", "tensor") and resolved.w_symmetries == (True,)
    assert set(SPACE_FLAGS.values()) <= set(SpaceSpec().to_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w_bits": (1, 2)}, "w_bits must be bit widths in 2..16"),
        ({"a_bits": ()}, "a_bits must be bit widths"),
        ({"granularities": ("row",)}, "granularities must be among"),
        ({"w_symmetries": (1,)}, "w_symmetries must hold True/False"),
        ({"first_last": "huge"}, "first_last"),
        ({"architecture": {"depths": (2.5,)}}, "architecture\\['depths'\\]"),
        ({"quantizer": ""}, "quantizer"),
    ],
)
def test_bad_fields_name_themselves(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpaceSpec(**kwargs)  # type: ignore[arg-type]


def test_unknown_keys_and_first_last_policies() -> None:
    with pytest.raises(ValueError, match="unknown space field"):
        SpaceSpec.from_dict({"bits": [2]})
    assert parse_first_last("8/8") == (8, 8)
    assert parse_first_last("4") == (4, 4)
    assert parse_first_last("elastic") is None
