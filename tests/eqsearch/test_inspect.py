"""`eqsearch inspect`: checkpoints, Pareto fronts and ONNX exports described; bad files refused."""

from __future__ import annotations

import json
import pickle
import shlex
import sys
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.app.inspection import FRONT_ROWS, inspect_file
from tests.supernet.tiny_run import HISTORY, tiny_checkpoint

from .search_fixtures import enumerable_space


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint, a front searched on it and an ONNX export of it."""
    directory = tmp_path_factory.mktemp("run")
    checkpoint = tiny_checkpoint(directory)
    search = (
        f"nsga --supernet {checkpoint} --objectives bitops,w_comp --population 16 "
        f"--generations 3 --no-progress"
    )
    assert main(shlex.split(search)) == 0
    export = (
        f"export --supernet {checkpoint} --uniform 4/4 --output {directory / 'model.onnx'} "
        "--val-images 16 --min-agreement 0 --no-progress"
    )
    assert main(shlex.split(export)) == 0
    return directory


def _json(capsys: pytest.CaptureFixture[str], path: Path) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_a_checkpoint_shows_its_model_space_data_epochs_and_accuracies(run, capsys) -> None:
    shown = _json(capsys, run / "supernet.pt")
    assert shown["kind"] == "checkpoint"
    summary = shown["summary"]
    assert summary["model"] == "tiny_convnet" and summary["checkpoint"] == "supernet"
    assert summary["w_bits"] == [2, 4, 8] and summary["elastic_layers"] == 2
    assert summary["data"]["name"] == "digits" and summary["data"]["holdout"] == 100
    assert summary["epochs_trained"] == 1 and summary["epochs_planned"] == 3
    assert summary["accuracy"] == {
        "full precision": 71.5,
        "W8/A8 (largest)": 80.25,
        "W2/A2 (smallest)": 41.0,
    }
    assert [row["phase"] for row in shown["rows"]] == [entry["phase"] for entry in HISTORY]
    assert main(["inspect", str(run / "supernet.pt")]) == 0
    printed = capsys.readouterr().out
    assert "W8/A8 (largest) 80.25" in printed and "training log" in printed


def test_a_checkpoint_is_read_without_running_its_model_factory(tmp_path, capsys) -> None:
    payload = {
        "format": "eqsearch-supernet",
        "version": 1,
        "kind": "supernet",
        "build_info": {"model": "eqsearch_inspect_probe.nets:make_net"},
        "space": enumerable_space().to_dict(),
        "state_dict": {"w": torch.zeros(3, 2)},
    }
    path = tmp_path / "supernet.pt"
    torch.save(payload, path)
    shown = _json(capsys, path)
    assert shown["summary"]["model"] == "eqsearch_inspect_probe.nets:make_net"
    assert shown["summary"]["parameters"] == 6 and shown["summary"]["epochs_trained"] is None
    assert "eqsearch_inspect_probe" not in sys.modules


def test_a_front_shows_its_objectives_size_predictor_and_a_small_table(run, capsys) -> None:
    front = json.loads((run / "pareto.json").read_text())
    shown = _json(capsys, run / "pareto.json")
    summary = shown["summary"]
    assert shown["kind"] == "pareto"
    assert summary["objectives"] == ["bitops (min)", "w_comp (max)"]
    assert summary["configs"] == len(front["configs"]) and summary["predictor"] is None
    rows = shown["rows"]
    assert 1 <= len(rows) <= FRONT_ROWS and rows[0]["index"] == 0
    assert rows[-1]["index"] == len(front["configs"]) - 1
    assert rows[0]["bitops"] == front["configs"][0]["bitops"]


def test_an_onnx_export_shows_its_metadata(run, capsys) -> None:
    shown = _json(capsys, run / "model.onnx")
    summary = shown["summary"]
    assert shown["kind"] == "onnx" and summary["quantize_nodes"] == 4
    assert summary["inputs"] == {"images": ["batch", 1, 8, 8]}
    assert summary["metadata"]["eqsearch.model"] == "tiny_convnet"
    assert summary["metadata"]["eqsearch.form"] == "channel-sym-sym"
    assert [row["w_bits"] for row in shown["rows"]] == [8, 4, 4, 8]
    assert inspect_file(run / "model.onnx").to_dict() == shown


class _Payload:
    def __reduce__(self):
        return (print, ("executed",))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("samples.csv", b"index,config,accuracy\n", "it looks like a samples file"),
        ("notes.txt", b"hello", "its contents are unknown"),
        ("model.onnx", b"not a model", "model.onnx is not an ONNX model"),
        ("pareto.json", b'{"format": "eqsearch-pareto", "configs": 3}', "not a valid Pareto"),
        ("evil.pt", pickle.dumps(_Payload()), "not a checkpoint"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, name, content, message) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    assert message in _error_line(capsys)
    assert capsys.readouterr().out == ""


def test_a_pickle_that_needs_code_is_refused_and_never_run(tmp_path, capsys) -> None:
    path = tmp_path / "supernet.pt"
    torch.save({"format": "eqsearch-supernet", "payload": _Payload()}, path)
    assert main(["inspect", str(path)]) == 2
    assert "nothing in it was executed" in _error_line(capsys)
    assert "executed" not in capsys.readouterr().out


def test_a_missing_file_exits_2(tmp_path, capsys) -> None:
    assert main(["inspect", str(tmp_path / "nope.pt")]) == 2
    assert "file not found" in _error_line(capsys)
