"""The user's own data: dataset factories (and their trust rule), transform presets, the
epoch-0 evaluation, and `train`/`eval` with --dataset and --transforms."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.factories import trust_factories, trust_scope
from supernet import build_supernet, init_quantizers
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.evaluation.evaluate import checkpoint_data
from supernet.evaluation.oracle import measure_accuracy
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet

FACTORY = """
import pathlib

import torch
from torch.utils.data import TensorDataset

pathlib.Path(__file__).with_name("imported.marker").touch()


def make():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(90, 1, 8, 8, generator=generator)
    labels = torch.arange(90) % 3
    images[labels == 1, :, :4] += 1.0  # classes a network can tell apart
    images[labels == 2, :, :, :4] -= 1.0
    return TensorDataset(images[:60], labels[:60]), TensorDataset(images[60:], labels[60:])
"""


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "mydata.py"
    path.write_text(FACTORY)
    return path


def test_a_factory_from_a_file_path_keeps_its_8x8_images(
    factory_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(factory_file.parent)
    with trust_scope():
        data = build_data(DataSpec(name="./mydata.py:make", holdout=20, batch_size=16))
    assert (data.num_classes, data.in_channels, data.image_size) == (3, 1, 8)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(90, 1, 8, 8, generator=generator)
    labels = torch.arange(90) % 3
    images[labels == 1, :, :4] += 1.0
    images[labels == 2, :, :, :4] -= 1.0
    test_images, test_labels = data.test_tensors()
    assert torch.equal(test_images, images[60:]) and torch.equal(test_labels, labels[60:])
    held, _ = data.holdout_tensors()
    assert held.shape == (20, 1, 8, 8)
    assert all(any(torch.equal(image, known) for known in images[:60]) for image in held)
    batch, _ = next(iter(data.train.batches(0)))
    assert batch.shape == (16, 1, 8, 8)


def test_a_file_never_runs_a_dataset_factory_the_user_did_not_name(factory_file: Path) -> None:
    reference = f"{factory_file}:make"
    checkpoint = {"data": {"name": reference, "holdout": 10}}
    with trust_scope():
        with pytest.raises(ValueError, match=r"--trust-dataset .*mydata.py:make"):
            checkpoint_data(checkpoint)
        with pytest.raises(ValueError, match="--trust-dataset"):
            TrainConfig.from_dict({"model": "tiny_convnet", "dataset": reference}, source="x")
        assert not (factory_file.parent / "imported.marker").exists()
        trust_factories([reference])
        assert checkpoint_data(checkpoint).image_size == 8
    assert (factory_file.parent / "imported.marker").exists()


def _png_folder(root: Path, size: int) -> np.ndarray:
    """train/ and val/ of two classes of 3 RGB PNGs each; returns val's pixels in order."""
    from PIL import Image

    rng = np.random.default_rng(1)
    val_pixels = []
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(3):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
                if split == "val":
                    val_pixels.append(pixels)
    return np.stack(val_pixels)


def test_transforms_none_keeps_32x32_folder_images_unresized(tmp_path: Path) -> None:
    pixels = _png_folder(tmp_path, 32)
    spec = DataSpec(name="imagefolder", root=str(tmp_path), holdout=4, batch_size=2, workers=0)
    plain = build_data(replace(spec, transforms="none"))
    assert plain.image_size == 32
    images, labels = plain.test_tensors()
    expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    assert torch.equal(images, expected)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    cifar = build_data(replace(spec, transforms="cifar"))
    mean = torch.tensor((0.4914, 0.4822, 0.4465))[:, None, None]
    std = torch.tensor((0.2470, 0.2435, 0.2616))[:, None, None]
    assert cifar.image_size == 32
    assert torch.allclose(cifar.test_tensors()[0], (expected - mean) / std, atol=1e-6)
    assert build_data(spec).image_size == 224  # the default: ImageNet-style resizing
    with pytest.raises(ValueError, match="are 32×32 and transforms none keeps that size"):
        build_data(replace(spec, transforms="none", image_size=16))
    with pytest.raises(ValueError, match="transforms must be one of imagenet, cifar, none"):
        replace(spec, transforms="random")
    with pytest.raises(ValueError, match="tensors already"):
        DataSpec(name="digits", transforms="cifar")


def test_transforms_none_turns_the_embedded_shifts_off() -> None:
    shifted = build_data(DataSpec(name="digits", batch_size=64))
    plain = build_data(DataSpec(name="digits", batch_size=64, transforms="none"))
    first = next(iter(plain.train.batches(0)))[0]
    order = torch.randperm(len(plain.train), generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, plain.train_plain.tensors()[0][order[:64]])
    assert not torch.equal(next(iter(shifted.train.batches(0)))[0], first)


START = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    epochs=1,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=150,
    bn_images=150,
    quant_init_images=64,
    seed=4,
    device="cpu",
)


def test_the_epoch_0_entry_scores_the_untrained_supernet(tmp_path: Path) -> None:
    result = train_supernet(START, tmp_path, progress=False)
    start = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])
    assert start == result.history[0]
    assert {key: start[key] for key in ("phase", "epoch", "bits_largest", "bits_smallest")} == {
        "phase": "start",
        "epoch": 0,
        "bits_largest": [8, 8],
        "bits_smallest": [2, 2],
    }
    # the same scores from the supernet as it stood before its first step
    torch.manual_seed(START.seed)
    data = build_data(START.data_spec(), seed=START.seed)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, image_size=8, space=START.space
    )
    init_quantizers(supernet, data.calibration_images(START.quant_init_images))
    space, calibration = supernet.space, data.calibration_source(START.bn_images)
    form = space.forms[0]
    for key, config in [
        ("acc_fp", None),
        ("acc_largest", space.uniform(8, 8, form)),
        ("acc_smallest", space.uniform(2, 2, form)),
    ]:
        assert start[key] == measure_accuracy(supernet, config, data.holdout, calibration), key
    assert result.history[1]["phase"] == "supernet"


def test_train_and_eval_take_a_dataset_factory_file(
    factory_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(factory_file.parent)
    command = [
        "train",
        "--model",
        "tiny_convnet",
        "--dataset",
        "./mydata.py:make",
        "--transforms",
        "none",
        "--epochs",
        "1",
        "--w-choices",
        "2,8",
        "--a-choices",
        "2,8",
        "--holdout",
        "20",
        "--calib-images",
        "30",
        "--quant-init-images",
        "16",
        "--batch-size",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--no-progress",
        "--out",
        "run",
    ]
    assert main(command) == 0
    shown = capsys.readouterr().out
    assert "before training (epoch 0): FP " in shown and "W8A8 " in shown and "W2A2 " in shown
    first = json.loads(Path("run/train_log.jsonl").read_text().splitlines()[0])
    assert first["phase"] == "start"
    stored = torch.load("run/supernet.pt", weights_only=True)
    assert stored["data"]["name"] == "./mydata.py:make"
    assert stored["data"]["transforms"] == "none"
    assert stored["train_config"]["optimizer"] == "sgd"
    assert main(["eval", "--supernet", "run/supernet.pt", "--uniform", "8/8"]) == 2
    assert "--trust-dataset ./mydata.py:make" in capsys.readouterr().err
    trusted = ["--trust-dataset", "./mydata.py:make", "eval", "--supernet", "run/supernet.pt"]
    assert main([*trusted, "--uniform", "8/8", "--json", "a.json"]) == 0
    named = ["eval", "--supernet", "run/supernet.pt", "--dataset", "./mydata.py:make"]
    assert main([*named, "--uniform", "8/8", "--json", "b.json"]) == 0
    assert json.loads(Path("a.json").read_text()) == json.loads(Path("b.json").read_text())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--optimizer rmsprop", "optimizer must be one of adam, adamw, sgd"),
        ("--lr-schedule poly", "lr_schedule must be one of cosine, step, constant"),
        ("--transforms random", "transforms must be one of imagenet, cifar, none"),
        ("--epochs 2 --warmup-epochs 2", "warmup_epochs must be below epochs (2)"),
        ("--nesterov", "nesterov needs optimizer sgd"),
        ("--dataset ./missing.py:make", "no such file ./missing.py"),
        ("--dataset 'my data'", "dataset must be one of"),
    ],
)
def test_bad_training_values_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: str, message: str
) -> None:
    import shlex

    assert main(["train", *shlex.split(flags), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error
    assert not (tmp_path / "run").exists()


def _digit_loaders() -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(digits.target)
    train = DataLoader(TensorDataset(images[:300], labels[:300]), batch_size=50, shuffle=True)
    return train, DataLoader(TensorDataset(images[1500:], labels[1500:]), batch_size=100)


def test_fit_supernet_on_loaders_writes_a_run_that_resumes_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supernet.training.fit import fit_supernet

    def fresh() -> object:
        torch.manual_seed(0)
        return build_supernet(
            "tiny_convnet",
            num_classes=10,
            in_channels=1,
            image_size=8,
            w_bits=(2, 8),
            a_bits=(2, 8),
        )

    config = TrainConfig(epochs=2, quant_init_images=32, bn_images=100, device="cpu")
    straight = fit_supernet(fresh(), *_digit_loaders(), config, out_dir=tmp_path / "a")
    fit_supernet(fresh(), *_digit_loaders(), config, out_dir=tmp_path / "b", stop_after=1)
    resumed = fit_supernet(fresh(), *_digit_loaders(), config, out_dir=tmp_path / "b", resume=True)
    for key, value in straight.supernet.state_dict().items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key
    assert [h.get("acc_largest") for h in resumed.history] == [
        h.get("acc_largest") for h in straight.history
    ]
    stored = torch.load(tmp_path / "a" / "supernet.pt", weights_only=True)
    assert stored["data"]["name"] == "dataloaders" and stored["data"]["holdout"] == 297
    assert stored["train_config"]["space"]["w_bits"] == [2, 8]
    assert main(["eval", "--supernet", str(tmp_path / "a" / "supernet.pt")]) == 2
    assert "trained on DataLoaders given in Python" in capsys.readouterr().err
