"""Bring your own model: factories by reference, reloadable checkpoints, layers left in float."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.space import ElasticSpace
from supernet import build_supernet
from supernet.files.checkpoint import load_supernet, save_supernet
from supernet.networks.elastic import UnquantizedLayersWarning
from supernet.networks.models import model_entry

SHARED = "tests.supernet.user_models:shared_block_net"
ATTENTION = "tests.supernet.user_models:attention_net"


def test_a_factory_reference_builds_and_a_module_called_twice_counts_twice() -> None:
    supernet = build_supernet(SHARED, num_classes=10, in_channels=1, image_size=8)
    layers = {layer.name: layer for layer in supernet.space.layers}
    assert list(layers) == ["stem", "shared", "mix", "head"]
    # the shared 3×3 conv runs twice per image: MACs and input activations twice, weights once
    assert layers["shared"].macs == 2 * (8 * 8) * 8 * 8 * 9
    assert layers["shared"].n_inputs == 2 * 8 * 8 * 8
    assert layers["shared"].n_params == 8 * 8 * 9
    assert layers["stem"].macs == (8 * 8) * 8 * 1 * 9
    assert model_entry(SHARED).image_size == 8
    assert "shared 3×3 block" in model_entry(SHARED).description


def test_layers_that_cannot_be_quantized_are_named_in_a_warning_and_in_the_space() -> None:
    with pytest.warns(UnquantizedLayersWarning, match=r"2 layer\(s\) cannot be quantized"):
        supernet = build_supernet(ATTENTION, num_classes=4, in_channels=1, image_size=8)
    assert supernet.space.unquantized == ("temporal (Conv1d)", "attention (MultiheadAttention)")
    assert [layer.name for layer in supernet.space.layers] == ["stem", "mix", "head"]
    again = ElasticSpace.from_json(supernet.space.to_json())
    assert again == supernet.space and again.unquantized == supernet.space.unquantized
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model without such layers warns nothing
        plain = build_supernet("tiny_convnet", num_classes=3)
    assert "unquantized" not in plain.space.to_dict()  # today's JSON and fingerprint


def test_a_user_models_checkpoint_reloads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    supernet = build_supernet(SHARED, num_classes=10, in_channels=1, image_size=8)
    path = tmp_path / "supernet.pt"
    save_supernet(path, supernet, kind="supernet")
    again, _ = load_supernet(path)
    images = torch.randn(4, 1, 8, 8)
    config = supernet.space.uniform(4, 4)
    supernet.eval()
    with torch.no_grad(), supernet.using(config), again.using(config):
        assert torch.equal(supernet(images), again(images))


def test_the_command_line_trains_evaluates_and_exports_a_user_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train = (
        f"train --model {SHARED} --dataset digits --fp-epochs 2 --epochs 1 --w-choices 4,8 "
        f"--a-choices 4,8 --holdout 150 --calib-images 150 --quant-init-images 64 --no-progress "
        f"--out {run}"
    ).split()
    assert main(train) == 0
    trust = ["--trust-model", SHARED]  # a checkpoint naming a factory loads where you name it
    evaluate = ["eval", "--supernet", str(run / "supernet.pt"), "--json", str(tmp_path / "t.json")]
    assert main([*evaluate, *trust]) == 0
    assert set(json.loads((tmp_path / "t.json").read_text())) >= {"W8/A8", "W4/A4"}
    model = tmp_path / "model.onnx"
    export = [
        *trust,
        "export",
        "--supernet",
        str(run / "supernet.pt"),
        "--uniform",
        "8/8",
        "--output",
    ]
    assert main([*export, str(model), "--no-progress"]) == 0
    assert "top-1 agreement ORT vs PyTorch" in capsys.readouterr().out and model.is_file()


@pytest.mark.parametrize(
    "reference, message",
    [
        ("no_such_package.models:net", "cannot import no_such_package.models"),
        ("tests.supernet.user_models:missing", "has no function 'missing'"),
        ("tests.supernet.user_models:", "package.module:function"),
        ("resnet2000", "unknown model 'resnet2000'"),
    ],
)
def test_bad_model_references_exit_2(
    reference: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--model", reference, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_a_checkpoint_without_a_model_reference_says_how_to_save_one(tmp_path: Path) -> None:
    from supernet.networks.elastic import to_supernet
    from tests.supernet.user_models import shared_block_net

    supernet = to_supernet(shared_block_net(10, 1, 8), example_input=torch.zeros(2, 1, 8, 8))
    save_supernet(tmp_path / "a.pt", supernet, kind="supernet")
    with pytest.raises(ValueError, match=r"names no model to rebuild .* build_info="):
        load_supernet(tmp_path / "a.pt")
    info = {"model": SHARED, "num_classes": 10, "in_channels": 1, "image_size": 8}
    named = to_supernet(
        shared_block_net(10, 1, 8), example_input=torch.zeros(2, 1, 8, 8), build_info=info
    )
    save_supernet(tmp_path / "b.pt", named, kind="supernet")
    assert load_supernet(tmp_path / "b.pt")[0].space == named.space
