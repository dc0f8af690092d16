"""benchmarks/finetune_resnet18_32.py and its data: the smallest setting end to end."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_mnist32_split_is_fixed_disjoint_and_32x32() -> None:
    data = _module("finetune_data")
    train, val = data.mnist32_tiny()
    again, _ = data.mnist32_tiny()
    assert (len(train), len(val)) == (64, 32)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= label < 10 and len(train.classes) == 10
    assert torch.equal(train.images, again.images)
    # the padding is black (MNIST's normalised 0), the channels equal
    assert torch.allclose(image[:, :2], torch.tensor(-data.MEAN / data.STD))
    assert torch.equal(image[0], image[2])
    flat = {tuple(x.flatten()[::37].tolist()) for x in train.images}
    assert not flat & {tuple(x.flatten()[::37].tolist()) for x in val.images}
    with pytest.raises(ValueError, match="only 5000 images"):
        data.mnist32_split(4000, 1001)


@pytest.mark.slow
def test_quick_run_gives_figures_in_range(tmp_path: Path) -> None:
    bench = _module("finetune_resnet18_32")
    figures = bench.main(["--quick", "--out", str(tmp_path), "--json", str(tmp_path / "f.json")])
    for key in ("fp_val_pytorch", "fp_val_eqsearch", "holdout_fp_epoch0", "val_w8a8", "val_w2a2"):
        assert 0.0 <= figures[key] <= 100.0 and math.isfinite(figures[key]), key
    # epoch 0 and both supernet epochs
    assert len(figures["holdout_w8a8"]) == 3
    assert all(0.0 <= acc <= 100.0 for acc in figures["holdout_w8a8"])
    assert [entry["bits"] for entry in figures["holdout_lowest_open"]] == [8, 2]
    assert -100.0 <= figures["largest_drop_w8a8"] <= 100.0
    # the same weights, scored by PyTorch and by `eqsearch eval --model resnet18`
    assert figures["fp_val_eqsearch"] == pytest.approx(figures["fp_val_pytorch"])
    assert (tmp_path / "fp.pth").is_file() and (tmp_path / "ft" / "supernet.pt").is_file()
    assert "--init" in figures["train_command"]
