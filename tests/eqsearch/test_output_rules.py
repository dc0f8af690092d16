"""One output rule for every command: refuse before any work, create nothing on refusal,
replace only what eqsearch wrote (and only with --force), one writer per run directory."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.errors import InputError
from eqsearch.files import (
    OWNER_NAME,
    check_outputs,
    directory_owner,
    exclusive_writer,
    owned_directory,
)
from eqsearch.locks import hold_directory

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --fp-epochs 1 --w-choices 2,4,8 --a-choices 2,4,8 "
    "--holdout 150 --calib-images 150 --quant-init-images 64 --no-progress"
)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-256 of each file's bytes."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        )
        for path in sorted(root.rglob("*"))
    }


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], root: Path | None) -> str:
    """Run ``argv``; assert exit 2, one ``error:`` line, no traceback and ``root`` unchanged
    (None: a directory another process writes meanwhile)."""
    before = snapshot(root) if root is not None else None
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if root is not None:
        assert snapshot(root) == before
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_convnet supernet on the 8×8 digits, quantizers initialised, untrained."""
    from supernet import build_supernet, init_quantizers
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    spec = DataSpec("digits", holdout=120, eval_batch_size=120)
    data = build_data(spec, seed=0)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    init_quantizers(supernet, data.calibration_images(64))
    path = tmp_path_factory.mktemp("output-rules") / "run" / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 32})
    return path


# -- another process holding a directory -----------------------------------------------------


@pytest.fixture
def holder() -> Iterator[Callable[..., None]]:
    """Start processes that hold a directory's lock until the test ends."""
    started: list[subprocess.Popen[str]] = []

    def hold(directory: Path, *, shared: bool = False) -> None:
        code = (
            "import sys\n"
            "from eqsearch.locks import hold_directory\n"
            f"with hold_directory({str(directory)!r}, shared={shared}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "held"

    yield hold
    for process in started:
        process.communicate(input="", timeout=30)


def test_a_directory_held_by_another_process_is_refused_at_once(
    tmp_path: Path, holder: Callable[..., None]
) -> None:
    run = tmp_path / "run"
    holder(run)
    with (
        pytest.raises(InputError, match=r"another process is writing the run directory .*run"),
        hold_directory(run),
    ):
        pass
    with (
        pytest.raises(InputError, match="another process is writing"),
        hold_directory(run, shared=True),
    ):
        pass
    with (
        pytest.raises(InputError, match="another process is writing the directory of"),
        exclusive_writer(run / "samples.csv", what="samples file"),
    ):
        pass
    assert list(run.iterdir()) == []  # nothing created by the refused writers


def test_shared_holders_coexist_and_keep_out_an_exclusive_one(
    tmp_path: Path, holder: Callable[..., None]
) -> None:
    study = tmp_path / "study"
    holder(study, shared=True)
    with hold_directory(study, shared=True):  # another worker of the same study
        pass
    with (
        pytest.raises(InputError, match="another process is writing"),
        hold_directory(study),
    ):
        pass


def test_a_refusal_inside_the_block_removes_the_directories_it_created(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match="refused"),
        hold_directory(tmp_path / "a" / "b"),
    ):
        raise InputError("refused")
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(InputError), hold_directory(kept):
        raise InputError("refused")
    assert kept.is_dir()  # it was there before
    with pytest.raises(RuntimeError), hold_directory(tmp_path / "worked") as location:
        (location / "result.txt").write_text("partial")
        raise RuntimeError("failed after some work")
    assert (tmp_path / "worked" / "result.txt").is_file()  # what was written stays
    with hold_directory(tmp_path / "fine") as location, hold_directory(location):
        pass  # nested in one process: passes through
    assert (tmp_path / "fine").is_dir()


def test_hold_directory_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with (
        pytest.raises(InputError, match="is not a directory"),
        hold_directory(tmp_path / "notes.txt"),
    ):
        pass
    with (
        pytest.raises(InputError, match="is not a directory"),
        hold_directory(tmp_path / "notes.txt" / "run"),
    ):
        pass
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_exclusive_writer_removes_only_the_empty_file_it_created(tmp_path: Path) -> None:
    new = tmp_path / "new.csv"
    with pytest.raises(InputError), exclusive_writer(new):
        raise InputError("refused before the first row")
    assert not new.exists()
    existing = tmp_path / "existing.csv"
    existing.write_text("")
    with pytest.raises(InputError), exclusive_writer(existing):
        raise InputError("refused")
    assert existing.exists()
    with exclusive_writer(new):
        new.write_text("index,config\n")
    assert new.read_text() == "index,config\n"


def test_owned_directory_marks_once_and_leaves_nothing_on_refusal(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    with pytest.raises(InputError), owned_directory(demo, "demo", what="the demo directory"):
        raise InputError("refused before any work")
    assert not demo.exists()
    with owned_directory(demo, "demo", what="the demo directory") as location:
        (location / "summary.md").write_text("# demo\n")
    assert directory_owner(demo) == "demo"
    assert json.loads((demo / OWNER_NAME).read_text())["command"] == "demo"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / OWNER_NAME).write_text("my own notes")
    assert directory_owner(tmp_path / "mine") is None  # not a mark eqsearch wrote


def test_check_outputs_never_replaces_another_kind_and_needs_force_elsewhere(
    tmp_path: Path, checkpoint: Path
) -> None:
    outputs = {"summary.md": "report", "summary.json": "json", "plot.png": "image"}
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("my notes")
    with pytest.raises(InputError, match=r"summary\.md exists; pass --force"):
        check_outputs(out, outputs, force=False)
    check_outputs(out, outputs, force=True)
    (out / "plot.png").write_bytes(checkpoint.read_bytes())
    with pytest.raises(InputError, match="holds an eqsearch checkpoint; not replacing it"):
        check_outputs(out, outputs, force=True)
    (out / "plot.png").unlink()
    # in a directory the command marked as its own, a rerun replaces its files
    with owned_directory(out, "demo", what="the demo directory"):
        pass
    check_outputs(out, outputs, force=False, owner="demo")
    with pytest.raises(InputError, match="exists; pass --force"):
        check_outputs(out, outputs, force=False, owner="study tune-loss")


# -- train -----------------------------------------------------------------------------------


def test_train_refuses_a_log_that_no_run_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.jsonl").write_text("my own log\n")
    argv = [*TINY_TRAIN, "--epochs", "1", "--out", str(run)]
    for extra in ([], ["--force"]):
        line = refused(capsys, [*argv, *extra], tmp_path)
        assert "train_log.jsonl exists, but" in line and "holds no run of eqsearch train" in line


def test_train_force_replaces_only_a_run_of_eqsearch_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"weights": torch.zeros(2)}, run / "supernet.pt")  # another program's file
    argv = [*TINY_TRAIN, "--epochs", "1", "--out", str(run)]
    assert "pass --resume to continue it, --force" in refused(capsys, argv, tmp_path)
    assert "is not an eqsearch checkpoint" in refused(capsys, [*argv, "--force"], tmp_path)
    assert "--force replaces it; give one" in refused(
        capsys, [*argv, "--force", "--resume"], tmp_path
    )


@pytest.mark.slow
def test_train_force_starts_over_in_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    from supernet.files.checkpoint import load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "supernet.pt").write_bytes(checkpoint.read_bytes())  # an eqsearch run's checkpoint
    (run / "train_log.jsonl").write_text('{"epoch": 7}\n')
    assert main([*TINY_TRAIN, "--epochs", "1", "--out", str(run), "--force"]) == 0
    stored = load_checkpoint(run / "supernet.pt")
    assert stored["epoch"] == 1 and stored["train_config"]["model"] == "tiny_convnet"
    assert '"epoch": 7' not in (run / "train_log.jsonl").read_text()
    assert sorted(path.name for path in run.iterdir()) == [
        "fp.pt",
        "supernet.pt",
        "train_log.jsonl",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_kurtosis", "NaN"),
        ("lr", "Infinity"),
        ("weight_decay", "-Infinity"),
        ("gpg_weight", "NaN"),
        ("grad_clip", "NaN"),
        ("wdr_skew_weight", "1e400"),
        ("label_smoothing", "NaN"),
        ("wdr_kurtosis_weight", "NaN"),
    ],
)
def test_a_config_with_a_non_finite_float_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(f'{{"model": "tiny_convnet", "dataset": "digits", "{field}": {value}}}')
    line = refused(
        capsys, ["train", "--config", str(config), "--out", str(tmp_path / "r")], tmp_path
    )
    assert f"'{field}' must be" in line and "finite" in line


@pytest.mark.slow
def test_a_second_train_into_a_running_run_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "eqsearch", *TINY_TRAIN, "--epochs", "50", "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "fp.pt").exists():  # the first run is training
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.2)
        argv = [*TINY_TRAIN, "--epochs", "50", "--out", str(run)]
        for extra in ([], ["--force"]):
            line = refused(capsys, [*argv, *extra], None)
            assert "another process is writing the run directory" in line
        line = refused(capsys, ["train", "--resume", "--out", str(run), "--no-progress"], None)
        assert "another process is writing the run directory" in line
    finally:
        first.kill()
        first.communicate()


@pytest.mark.slow
def test_two_trains_started_together_into_one_new_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "eqsearch", *TINY_TRAIN, "--epochs", "2", "--out", str(run)]
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        for _ in range(2)
    ]
    results = []
    for process in processes:
        _, err = process.communicate(timeout=600)
        results.append((process.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    lines = loser.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), loser
    # the loser asked while the winner trained, or after it had finished
    assert "another process is writing" in lines[0] or "pass --resume" in lines[0]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    supernet_epochs = [entry["epoch"] for entry in log if entry["phase"] == "supernet"]
    assert supernet_epochs == [1, 2]  # one run's


# -- demo ------------------------------------------------------------------------------------


def test_demo_refuses_a_directory_it_did_not_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    mine = tmp_path / "mine"
    (mine / "run").mkdir(parents=True)
    (mine / "summary.md").write_text("my thesis summary\n")
    line = refused(capsys, ["demo", "--quick", "--out", str(mine), "--no-progress"], tmp_path)
    assert "not an eqsearch demo's" in line and "--force" in line
    # --force writes there, but never over a file of another kind
    (mine / "summary.md").write_bytes(checkpoint.read_bytes())
    argv = ["demo", "--quick", "--out", str(mine), "--no-progress", "--force"]
    assert "holds an eqsearch checkpoint" in refused(capsys, argv, tmp_path)
    # a demo's own directory holding a checkpoint at a report's name: the same
    marked = tmp_path / "marked"
    with owned_directory(marked, "demo", what="the demo directory"):
        (marked / "summary.json").write_bytes(checkpoint.read_bytes())
    argv = ["demo", "--quick", "--out", str(marked), "--no-progress"]
    assert "holds an eqsearch checkpoint" in refused(capsys, argv, tmp_path)


def test_demo_in_a_directory_another_process_writes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], holder: Callable[..., None]
) -> None:
    demo = tmp_path / "demo"
    holder(demo)
    argv = ["demo", "--quick", "--out", str(demo), "--no-progress"]
    assert "another process is writing the demo directory" in refused(capsys, argv, tmp_path)


# -- sample, nsga, strategy ------------------------------------------------------------------


def test_a_sample_refusal_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    out = tmp_path / "samples" / "new.csv"
    argv = ["sample", "--supernet", str(checkpoint), "--output", str(out), "--no-progress"]
    line = refused(capsys, [*argv, "--subnets", "10000000000000"], tmp_path)
    assert "--subnets 10000000000000 needs about" in line
    assert not out.parent.exists()


@pytest.mark.parametrize("command", ["nsga", "strategy"])
def test_a_search_into_a_directory_another_process_writes_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    holder: Callable[..., None],
    command: str,
) -> None:
    out = tmp_path / "fronts"
    holder(out)
    argv = [command, *(["uniform"] if command == "strategy" else [])]
    argv += ["--supernet", str(checkpoint), "--out", str(out), "--no-progress"]
    assert "another process is writing the output directory" in refused(capsys, argv, tmp_path)


def _strategy(checkpoint: Path, out: Path) -> list[str]:
    return [
        "strategy",
        "ilp",
        "--supernet",
        str(checkpoint),
        "--target",
        "tensorrt",
        "--budgets",
        "3",
        "--probes",
        "2",
        "--images",
        "32",
        "--out",
        str(out),
        "--no-progress",
    ]


@pytest.mark.slow
def test_strategy_warns_once_when_the_sensitivity_cache_cannot_be_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import eqsearch.strategies.sensitivity as sensitivity

    run = tmp_path / "run"
    run.mkdir()
    copy = run / "supernet.pt"
    copy.write_bytes(checkpoint.read_bytes())
    assert main(_strategy(copy, tmp_path / "first")) == 0
    (cache,) = run.glob("sensitivities-hessian-*.json")
    cache.unlink()
    cache.mkdir()  # a directory at the cache's name: the write really fails
    capsys.readouterr()
    assert main(_strategy(copy, tmp_path / "second")) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: the hessian sensitivities")
    assert "not cached" in warnings[0] and str(cache) in warnings[0]
    assert (tmp_path / "second" / "pareto.json").is_file()
    assert cache.is_dir() and not list(cache.iterdir())
    assert not [path for path in run.iterdir() if path.name.endswith(".tmp")]
    # a read-only place (root ignores permission bits, so the write is made to fail)
    cache.rmdir()

    def read_only(path: object, text: str) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sensitivity, "atomic_write_text", read_only)
    assert main(_strategy(copy, tmp_path / "third")) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "Permission denied" in err
    assert not cache.exists() and (tmp_path / "third" / "pareto.json").is_file()


@pytest.mark.parametrize("command", ["train", "nsga", "demo"])
def test_an_out_through_a_dangling_or_looping_link_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path, command: str
) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    for out in (tmp_path / "dangling", tmp_path / "dangling" / "run", tmp_path / "loop-a" / "run"):
        argv = {
            "train": [*TINY_TRAIN, "--epochs", "1"],
            "nsga": ["nsga", "--supernet", str(checkpoint), "--no-progress"],
            "demo": ["demo", "--quick", "--no-progress"],
        }[command]
        line = refused(capsys, [*argv, "--out", str(out)], tmp_path)
        assert "is a symbolic link that leads nowhere" in line
