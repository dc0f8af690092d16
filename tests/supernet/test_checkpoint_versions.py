"""Checkpoint format versions: 1 for a fixed architecture, 2 for a joint space; both read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supernet import build_supernet
from supernet.files.checkpoint import CheckpointError, load_checkpoint, save_supernet


def test_fixed_architecture_writes_version_1_and_version_2_files_are_read(tmp_path: Path) -> None:
    supernet = build_supernet("tiny_convnet", num_classes=10, in_channels=1, w_bits=(4, 8))
    path = tmp_path / "supernet.pt"
    save_supernet(path, supernet)
    payload = load_checkpoint(path)
    assert payload["version"] == 1
    payload["version"] = 2
    torch.save(payload, tmp_path / "joint.pt")
    assert load_checkpoint(tmp_path / "joint.pt")["version"] == 2
    payload["version"] = 3
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="reads versions 1, 2"):
        load_checkpoint(tmp_path / "future.pt")
