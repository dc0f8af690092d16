"""Checkpoints: round-trip, atomic writes, and every refusal (never executing a pickle)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from supernet import build_supernet
from supernet.files.checkpoint import (
    FORMAT_NAME,
    CheckpointError,
    atomic_save,
    load_checkpoint,
    load_supernet,
    save_supernet,
)


@pytest.fixture
def saved(tmp_path: Path):
    supernet = build_supernet("tiny_convnet", num_classes=4, w_bits=(2, 4), a_bits=(2, 4))
    with torch.no_grad():
        for parameter in supernet.parameters():
            parameter.add_(0.5)
    path = tmp_path / "supernet.pt"
    save_supernet(path, supernet, history=[{"epoch": 1, "loss": 0.5}], epoch=1)
    return supernet, path


def test_round_trip(saved) -> None:
    supernet, path = saved
    loaded, payload = load_supernet(path)
    assert loaded.space == supernet.space
    for key, value in supernet.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert payload["history"] == [{"epoch": 1, "loss": 0.5}]
    assert payload["format"] == FORMAT_NAME and not loaded.training


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.pt"
    atomic_save({"a": torch.ones(2)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["a"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]


def test_truncated_file_is_refused(saved) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(path)


def test_other_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "state.pt"
    torch.save({"weight": torch.ones(1)}, plain)
    with pytest.raises(CheckpointError, match="not an eqsearch checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_other_format_version_is_refused(saved) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_NAME, "version": 1, "payload": _Exploit(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="needs code to load"):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_weights_that_do_not_fit_are_refused(saved) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][key] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_supernet(path)
