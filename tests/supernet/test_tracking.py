"""`eqsearch train --log`: TensorBoard and MLflow receive the per-epoch log, offline."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from eqsearch.app.cli import main
from eqsearch.errors import InputError
from supernet.training.tracking import RunTracker, parse_log_backends, scalars

TINY_TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --epochs 1 --fp-epochs 1 --w-choices 2,8 "
    "--a-choices 2,8 --holdout 100 --calib-images 100 --quant-init-images 32 --no-progress"
)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tracked")
    assert main([*TINY_TRAIN, "--out", str(out), "--log", "jsonl,tensorboard,mlflow"]) == 0
    return out


@pytest.mark.slow
def test_tensorboard_holds_every_number_of_the_jsonl_log(tracked_run: Path) -> None:
    found = _tensorboard_scalars(tracked_run / "tensorboard")
    expected = {
        name: [(entry["epoch"], pytest.approx(value, rel=1e-6))]
        for entry in _log(tracked_run)
        for name, value in scalars(entry).items()
    }
    assert found == expected
    for tag in (
        "fp/loss",
        "fp/acc_fp",
        "supernet/lr",
        "supernet/acc_largest",
        "supernet/acc_smallest",
    ):
        assert tag in found
    assert any(tag.startswith("supernet/loss") for tag in found)


@pytest.mark.slow
def test_mlflow_holds_the_same_metrics_and_the_settings(tracked_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked_run / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("eqsearch").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == tracked_run.name
    assert json.loads(run.data.params["model"]) == "tiny_convnet"
    entries = _log(tracked_run)
    supernet = next(entry for entry in entries if entry["phase"] == "supernet")
    history = client.get_metric_history(run.info.run_id, "supernet/acc_largest")
    assert [(m.step, m.value) for m in history] == [(1, pytest.approx(supernet["acc_largest"]))]
    assert set(run.data.metrics) == {name for e in entries for name in scalars(e)}


@pytest.mark.slow
def test_a_resumed_run_logs_only_its_new_epochs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*TINY_TRAIN, "--out", str(out), "--log", "tensorboard"]) == 0
    first = _tensorboard_scalars(out / "tensorboard")
    arguments = ["train", "--out", str(out), "--resume", "--log", "tensorboard", "--no-progress"]
    assert main(arguments) == 0  # all epochs done: nothing new to log
    assert _tensorboard_scalars(out / "tensorboard") == first


def test_a_missing_package_exits_2_naming_the_extra_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    out = tmp_path / "run"
    assert main([*TINY_TRAIN, "--out", str(out), "--log", "tensorboard,mlflow"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --log mlflow needs the mlflow package: pip install 'eqsearch[mlflow]'\n")
    assert not out.exists()
    assert main([*TINY_TRAIN, "--out", str(out), "--log", "wandb"]) == 2
    assert "--log takes jsonl, tensorboard, mlflow" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_refused_before_its_first_epoch_leaves_no_tracking_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    arguments = ["--dataset", "cifar10", "--data-root", str(tmp_path / "none")]
    assert main([*TINY_TRAIN, *arguments, "--out", str(out), "--log", "tensorboard,mlflow"]) == 2
    assert capsys.readouterr().err.startswith("error: CIFAR-10 data root not found")
    assert not out.exists()


def test_backends_are_parsed_once_each() -> None:
    assert parse_log_backends("tensorboard, jsonl,tensorboard") == ("tensorboard", "jsonl")
    with pytest.raises(InputError, match="--log takes"):
        parse_log_backends(" , ")


def test_an_entry_is_sent_once(tmp_path: Path) -> None:
    tracker = RunTracker(["tensorboard"], tmp_path, {"seed": 0}, skip=[("fp", 1)])
    tracker.log({"phase": "fp", "epoch": 1, "loss": 9.0})  # logged by an earlier invocation
    tracker.log({"phase": "supernet", "epoch": 1, "lr": 0.5, "open_bits": [2, 8], "ok": True})
    tracker.log({"phase": "supernet", "epoch": 1, "lr": 0.25})
    tracker.close()
    assert _tensorboard_scalars(tmp_path / "tensorboard") == {"supernet/lr": [(1, 0.5)]}


@pytest.mark.slow
def test_a_resumed_mlflow_run_continues_the_same_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    first = RunTracker(["mlflow"], tmp_path, {"seed": 0})
    first.log({"phase": "supernet", "epoch": 1, "lr": 0.5})
    first.close(failed=True)  # e.g. interrupted
    second = RunTracker(["mlflow"], tmp_path, {"seed": 0}, resume=True, skip=[("supernet", 1)])
    second.log({"phase": "supernet", "epoch": 1, "lr": 9.0})  # logged already: skipped
    second.log({"phase": "supernet", "epoch": 2, "lr": 0.25})
    second.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("eqsearch").experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "supernet/lr")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.25)]
