"""YAML settings files: read safely and as strictly as JSON ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqsearch.errors import InputError
from eqsearch.settings_files import parse_yaml, read_settings


def test_plain_yaml_values_are_read() -> None:
    text = (
        "lr: 1e-4\nmomentum: 0.9\nepochs: 3\nw_bits: [2, 4, 8]\nname: resnet18\n"
        "day: 2026-12-07\nroot: null\ncompile: true\nspace: {a_bits: [4, 8]}\n"
    )
    assert parse_yaml(text) == {
        "lr": 1e-4,
        "momentum": 0.9,
        "epochs": 3,
        "w_bits": [2, 4, 8],
        "name": "resnet18",
        "day": "2026-12-07",
        "root": None,
        "compile": True,
        "space": {"a_bits": [4, 8]},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: .nan", "'lr' must be finite; got .nan"),
        ("lr: -.Inf", "'lr' must be finite; got -.Inf"),
        ("space: {w_bits: [2, .inf]}", "'w_bits' must be finite; got .inf"),
        ("lr: 1.5e999", "'lr' must be a finite number; got '1.5e999', which overflows"),
        ("epochs: " + "1" * 5000, "'epochs' is out of range"),
        ("epochs: 0x10", "'epochs' expected an integer; got '0x10'"),
        ("epochs: 1_000", "'epochs' expected an integer; got '1_000'"),
        ("lr: 1\nlr: 2", "the key 'lr' appears twice in one mapping"),
        ("space: {w_bits: [2], w_bits: [4]}", "the key 'w_bits' appears twice"),
        ("1: 2", "keys must be text"),
        ("a: &x 1\nb: *x", "the alias *x (line 2) is not read"),
        ("a: !!python/object/apply:os.system ['true']", "the tag !!python/object/apply:os.system"),
        ("a: !!binary aGk=", "the tag !!binary"),
        ("a: !!set {b: null}", "the tag !!set"),
        ("a: 1\n---\nb: 2", "is not YAML: expected a single document"),
        ("a: [1", "is not YAML"),
        ("- " * 5000 + "1", "nested too deeply"),
    ],
)
def test_refused_yaml_is_one_line_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_yaml(text, what="train config x.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("train config x.yaml")
    assert "\n" not in str(error.value)


def test_a_python_tag_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "c.yaml"
    path.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(InputError, match="is not read"):
        read_settings(path)
    assert not marker.exists()


def test_the_name_chooses_the_reader(tmp_path: Path) -> None:
    for name in ("c.yaml", "c.YML"):
        (tmp_path / name).write_text("lr: 1e-3\n")
        assert read_settings(tmp_path / name) == {"lr": 1e-3}
    (tmp_path / "c.json").write_text("lr: 1e-3\n")
    with pytest.raises(InputError, match="is not JSON"):
        read_settings(tmp_path / "c.json")


def test_train_settings_are_keyed_as_the_flags_and_older_keys_warn_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eqsearch import errors
    from eqsearch.app.training import read_train_settings

    monkeypatch.setattr(errors, "_WARNED", set())
    new = tmp_path / "new.yaml"
    new.write_text("w_choices: [2, 4]\na_choices: [4, 8]\ncalib_images: 64\ngpg_lambda: 0.5\n")
    config = read_train_settings(new)
    assert (config.w_bits, config.a_bits, config.bn_images, config.gpg_weight) == (
        (2, 4),
        (4, 8),
        64,
        0.5,
    )
    assert capsys.readouterr().err == ""
    old = tmp_path / "old.json"
    old.write_text('{"w_bits": [2, 4], "a_bits": [4, 8], "bn_images": 64, "gpg_weight": 0.5}')
    assert read_train_settings(old) == config
    assert capsys.readouterr().err.splitlines() == [
        f"warning: train config {old}: the key {key} is now {new_key}"
        for key, new_key in [
            ("w_bits", "w_choices"),
            ("a_bits", "a_choices"),
            ("bn_images", "calib_images"),
            ("gpg_weight", "gpg_lambda"),
        ]
    ]
    stored = tmp_path / "stored.json"
    config.to_json(stored)  # as a run stores its settings: read as written, no warning
    assert read_train_settings(stored) == config
    assert capsys.readouterr().err == ""
    both = tmp_path / "both.json"
    both.write_text('{"w_bits": [2, 4], "w_choices": [2, 8]}')
    with pytest.raises(InputError, match="w_choices is given twice"):
        read_train_settings(both)
