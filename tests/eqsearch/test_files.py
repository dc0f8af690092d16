"""Atomic writes, output checks, bounded reads and write locks."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from eqsearch.errors import InputError
from eqsearch.files import (
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    check_output_directory,
    check_output_file,
    exclusive_writer,
    read_json,
    read_text,
    remove_stale_temporaries,
    sniff_kind,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(OSError, match="disk full"), atomic_writer(target) as stream:
        stream.write(b"new, half written")
        raise OSError(28, "disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.bin", b"123")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"123"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "pareto.json"
    dead = tmp_path / ".pareto.json.999999999.abcd.tmp"  # no such process
    alive = tmp_path / f".pareto.json.{os.getpid()}.efgh.tmp"
    other = tmp_path / ".other.json.999999999.abcd.tmp"
    for path in (dead, alive, other):
        path.write_text("partial")
    assert remove_stale_temporaries(target) == [dead]
    assert alive.exists() and other.exists()
    atomic_write_text(tmp_path / "other.json", "{}")  # a write cleans its own leftovers
    assert not other.exists()


def _torch_like_zip(path: Path, marker: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00X\x06\x00\x00\x00format" + marker)
        archive.writestr("archive/version", b"3")


def test_sniff_kind_tells_the_files_of_eqsearch_apart(tmp_path: Path) -> None:
    files = {
        "ckpt.pt": None,
        "pred.pt": None,
        "samples.csv": b"index,config,w_bits\n",
        "pareto.json": b'{\n  "format": "eqsearch-pareto",\n  "version": 1}',
        "pred.json": b'{"format": "eqsearch-predictor"}',
        "space.json": b'{"layers": []}',
        "table.json": b'{"W4A4": {"top1": 1.0}}',
        "plot.png": b"\x89PNG\r\n\x1a\n....",
        "model.onnx": b"\x08\x07\x12\x07pytorch",
        "notes.csv": b"a,b\n1,2\n",
        "binary.json": b'{"' + bytes(range(128, 256)) * 8,  # opens like JSON, is not text
        "accented.json": '{"café": 1}'.encode(),
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    _torch_like_zip(tmp_path / "ckpt.pt", b"eqsearch-supernet")
    _torch_like_zip(tmp_path / "pred.pt", b"eqsearch-predictor")
    import numpy as np

    np.savez(tmp_path / "weights.npz", a=np.zeros(2))
    expected = {
        "ckpt.pt": "checkpoint",
        "pred.pt": "predictor",
        "samples.csv": "samples",
        "pareto.json": "pareto",
        "pred.json": "predictor",
        "space.json": "space",
        "table.json": "json",
        "plot.png": "image",
        "model.onnx": "onnx",
        "notes.csv": None,
        "binary.json": None,
        "accented.json": "json",
        "weights.npz": "weights",
    }
    assert {name: sniff_kind(tmp_path / name) for name in expected} == expected


def test_one_rule_for_existing_outputs(tmp_path: Path) -> None:
    checkpoint = tmp_path / "supernet.pt"
    _torch_like_zip(checkpoint, b"eqsearch-supernet")
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n")
    new = tmp_path / "deeper" / "new.json"
    assert check_output_file(new, kind="table") == new  # a missing parent is created later
    with pytest.raises(InputError, match="exists; pass --force"):
        check_output_file(notes, kind="samples")
    assert check_output_file(notes, kind="samples", force=True) == notes
    for force in (False, True):  # a checkpoint is never replaced by a table
        with pytest.raises(InputError, match="holds an eqsearch checkpoint; not replacing it"):
            check_output_file(checkpoint, kind="table", force=force, flag="--json")
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(tmp_path, kind="table")
    with pytest.raises(InputError, match=r"notes.csv is not a directory"):
        check_output_file(notes / "x.json", kind="table")
    with pytest.raises(InputError, match="exists and is not a directory"):
        check_output_directory(notes)


def test_an_unwritable_directory_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path: object, mode: int) -> bool:
        # what a read-only mount answers (root ignores permission bits, not EROFS)
        if Path(str(path)) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(InputError, match=r"cannot write in .*locked \(permission denied"):
        check_output_file(locked / "a.json", kind="table")
    with pytest.raises(InputError, match="cannot write in"):
        check_output_directory(locked / "run")


def test_reads_are_bounded_and_refuse_devices_and_deep_nesting(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a regular file"):
        read_json("/dev/zero", what="config file")
    big = tmp_path / "big.json"
    big.write_text(" " * 2048 + "{}")
    with pytest.raises(InputError, match="limit is 1,024 bytes"):
        read_json(big, limit=1024)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        read_json(deep)
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    with pytest.raises(InputError, match="is not JSON"):
        read_json(broken)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        read_text(binary)
    with pytest.raises(InputError, match="not found"):
        read_json(tmp_path / "missing.json", what="config file")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": [1, 2]}))
    assert read_json(good) == {"a": [1, 2]}


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    with (
        exclusive_writer(path, what="samples file"),
        pytest.raises(InputError, match="another process is writing samples file"),
        exclusive_writer(path, what="samples file"),
    ):
        pass
    with exclusive_writer(path):  # released with the block
        pass
