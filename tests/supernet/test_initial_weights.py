"""``--init``: torchvision hub files, training scripts' wrappers and prefixes, another head."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

from eqsearch.app.cli import main
from eqsearch.errors import InputError
from supernet.files.initial_weights import load_initial_weights
from supernet.networks.build import build_supernet
from supernet.networks.elastic import Supernet
from supernet.networks.models import create_model

State = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def resnet18() -> Supernet:
    """A 10-class ResNet-18 supernet (32×32 inputs keep it small)."""
    return build_supernet("resnet18", num_classes=10, in_channels=3, image_size=32)


def _torchvision_state(seed: int, num_classes: int = 10) -> State:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).state_dict()


def _without_counters(state: State) -> State:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _prefixed(prefix: str) -> Callable[[State], object]:
    return lambda state: {prefix + key: value for key, value in state.items()}


SHAPES: dict[str, Callable[[State], object]] = {
    "hub file": lambda state: state,
    "hub file without BN counters": _without_counters,
    "state_dict wrapper": lambda state: {"state_dict": state, "epoch": 90},
    "model wrapper": lambda state: {"model": state, "optimizer": {"lr": 0.1}, "epoch": 3},
    "model_state_dict wrapper": lambda state: {"model_state_dict": state},
    "DDP prefix": _prefixed("module."),
    "torch.compile prefix": _prefixed("_orig_mod."),
    "DDP of a compiled model, wrapped": lambda state: {
        "model": _prefixed("module._orig_mod.")(state)
    },
    "LightningModule": lambda state: {"state_dict": _prefixed("model.")(state)},
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_torchvision_weights_land_from_every_usual_file_shape(
    shape: str, resnet18: Supernet, tmp_path: Path
) -> None:
    state = _torchvision_state(seed=len(shape))
    path = tmp_path / "weights.pth"
    torch.save(SHAPES[shape](state), path)
    load_initial_weights(resnet18, path)
    loaded = resnet18.model.state_dict()
    expected = state if "counters" not in shape else _without_counters(state)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_a_1000_class_head_is_left_out_on_request(resnet18: Supernet, tmp_path: Path) -> None:
    state = _torchvision_state(seed=7, num_classes=1000)  # torchvision's ImageNet head
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(_without_counters(state), path)
    with pytest.raises(
        InputError,
        match=r"fc.weight has shape \(1000, 512\), the model \(10, 512\)\); --init-skip-head",
    ):
        load_initial_weights(resnet18, path)
    head = {
        key: value.clone() for key, value in resnet18.model.state_dict().items() if "fc." in key
    }
    load_initial_weights(resnet18, path, skip_head=True)
    loaded = resnet18.model.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            assert torch.equal(loaded[key], head[key]), key  # as initialised
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[key], value), key


def test_the_head_is_the_last_layer_with_the_class_count(tmp_path: Path) -> None:
    # LeNet-5 ends in three linear layers: only classifier.5 is the head
    supernet = build_supernet("lenet5", num_classes=10, in_channels=1, image_size=28)
    torch.manual_seed(0)
    source = create_model("lenet5", num_classes=4, in_channels=1, image_size=28).state_dict()
    torch.save(source, tmp_path / "lenet.pt")
    load_initial_weights(supernet, tmp_path / "lenet.pt", skip_head=True)
    loaded = supernet.model.state_dict()
    assert torch.equal(loaded["classifier.3.weight"], source["classifier.3.weight"])
    assert loaded["classifier.5.weight"].shape == (10, 84)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: {k: v for k, v in s.items() if k != "layer1.0.conv1.weight"},
            r"missing \['layer1.0.conv1.weight'\]",
        ),
        (lambda s: {**s, "extra.weight": torch.zeros(1)}, r"unexpected \['extra.weight'\]"),
        (
            lambda s: {**s, "conv1.weight": s["conv1.weight"] * float("nan")},
            r"non-finite weights \(conv1.weight\)",
        ),
        (lambda s: {"weights": list(s.values())}, "neither an eqsearch checkpoint nor a state"),
        (lambda s: {"model": {"state_dict": 3}}, "neither an eqsearch checkpoint nor a state"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_naming_the_key(
    change: Callable[[State], object], message: str, resnet18: Supernet, tmp_path: Path
) -> None:
    path = tmp_path / "weights.pth"
    torch.save(change(dict(_torchvision_state(seed=3))), path)
    with pytest.raises(InputError, match=message):
        load_initial_weights(resnet18, path)


TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --epochs 1 --w-choices 2,8 --a-choices 2,8 "
    "--holdout 100 --calib-images 100 --quant-init-images 64 --no-progress --device cpu"
)


def test_train_init_takes_a_ddp_checkpoint_of_another_class_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = create_model("tiny_convnet", num_classes=7, in_channels=1, image_size=8)
    path = tmp_path / "ddp.pt"
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    assert main([*TRAIN, "--init", str(path), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "11.weight has shape (7, 16)" in err[0], err
    assert "--init-skip-head" in err[0]
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "run"
    assert main([*TRAIN, "--init", str(path), "--init-skip-head", "--out", str(out)]) == 0
    assert (out / "supernet.pt").is_file()
    assert main([*TRAIN, "--init-skip-head", "--out", str(tmp_path / "no-init")]) == 2
    assert "init_skip_head leaves the classifier out of init" in capsys.readouterr().err
