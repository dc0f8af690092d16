"""The supernet, the training config and checkpoints derive their space from one SpaceSpec."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eqsearch.space.spec import SpaceSpec
from supernet import build_supernet
from supernet.networks.build import quantizer_spec
from supernet.networks.rebuild import rebuild_supernet
from supernet.training.config import TrainConfig

SPEC = SpaceSpec(w_bits=(2, 4, 8), a_bits=(4, 8), granularities=("channel",), first_last="fp")


def test_build_supernet_from_a_spec_equals_the_single_fields() -> None:
    from_spec = build_supernet("tiny_convnet", num_classes=10, in_channels=1, space=SPEC)
    from_fields = build_supernet(
        "tiny_convnet",
        num_classes=10,
        in_channels=1,
        w_bits=(2, 4, 8),
        a_bits=(4, 8),
        granularities=("channel",),
        first_last="fp",
    )
    assert from_spec.space == from_fields.space
    assert (
        from_spec.space.w_bits == (2, 4, 8) and from_spec.space.granularities[0].value == "channel"
    )
    # the checkpoint's build info holds the spec with the quantizer's forms resolved
    stored = SpaceSpec.from_dict(from_spec.build_info["space"])
    assert stored == SPEC.resolved(["channel"], [True, False], [True, False])
    assert rebuild_supernet(from_spec.build_info).space == from_spec.space
    assert quantizer_spec(SPEC).w_bits == (2, 4, 8)


def test_checkpoints_of_the_older_build_info_layout_still_rebuild() -> None:
    current = build_supernet("tiny_convnet", num_classes=10, in_channels=1, space=SPEC)
    older = {key: value for key, value in current.build_info.items() if key != "space"}
    older["quantizer"] = {
        "name": "lsq",
        "w_bits": [2, 4, 8],
        "a_bits": [4, 8],
        "granularities": ["channel"],
        "w_symmetries": [True, False],
        "a_symmetries": [True, False],
    }
    older["first_last"] = "fp"
    assert rebuild_supernet(older).space == current.space


def test_fixed_models_refuse_architecture_choices() -> None:
    with pytest.raises(ValueError, match="fixed architecture"):
        build_supernet(
            "tiny_convnet", num_classes=10, space=SpaceSpec(architecture={"depths": (1, 2)})
        )


def test_train_config_holds_the_spec_and_reads_older_files() -> None:
    config = TrainConfig(model="tiny_convnet", dataset="digits", space=SPEC)
    assert config.to_dict()["space"] == SPEC.to_dict()
    assert TrainConfig.from_dict(config.to_dict()) == config
    # the single fields read through and can be set, also by replace and older flat files
    assert config.w_bits == (2, 4, 8) and config.first_last == "fp"
    assert replace(config, a_bits=(2, 8)).space == replace(SPEC, a_bits=(2, 8))
    older = {
        "model": "tiny_convnet",
        "dataset": "digits",
        "w_bits": [2, 4, 8],
        "a_bits": [4, 8],
        "granularities": ["channel"],
        "first_last": "fp",
    }
    assert TrainConfig.from_dict(older) == config
    with pytest.raises(ValueError, match="w_bits"):
        replace(config, w_bits=(1, 2))


def test_train_flags_set_the_spec(tmp_path) -> None:
    from eqsearch.app.cli import build_parser
    from eqsearch.app.commands.train import _train_config

    args = build_parser().parse_args(
        [
            "train",
            "--out",
            str(tmp_path),
            "--model",
            "tiny_convnet",
            "--w-choices",
            "2,4,8",
            "--a-choices",
            "4,8",
            "--granularity",
            "channel",
            "--first-last",
            "fp",
            "--a-symmetry",
            "sym",
        ]
    )
    config = _train_config(args)
    assert config.space == replace(SPEC, a_symmetries=(True,))
    assert config.model == "tiny_convnet"
