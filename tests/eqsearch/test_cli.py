"""The command line: exit codes and error lines."""

from __future__ import annotations

import json
import os
import shlex

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.errors import InputError


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet5", "resnet20", "efficientnet_b0"):
        assert name in out
    assert "lsq" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("error: ")


TINY_TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --epochs 1 --fp-epochs 1 --w-choices 2,4,8 "
    "--a-choices 2,4,8 --holdout 150 --calib-images 150 --quant-init-images 64 --no-progress"
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    assert main([*TINY_TRAIN, "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoint_and_log(trained_run, capsys) -> None:
    assert (trained_run / "supernet.pt").is_file()
    phases = [
        line.split('"phase": ')[1].split(",")[0]
        for line in (trained_run / "train_log.jsonl").read_text().splitlines()
    ]
    assert phases == ['"fp"', '"start"', '"supernet"']
    assert main(["eval", "--supernet", str(trained_run / "fp.pt")]) == 0
    assert "full-precision model" in capsys.readouterr().out


def test_train_refuses_to_overwrite(trained_run, capsys: pytest.CaptureFixture[str]) -> None:
    stamp = (trained_run / "supernet.pt").stat().st_mtime_ns
    assert main([*TINY_TRAIN, "--out", str(trained_run)]) == 2
    assert "exists; pass --resume" in capsys.readouterr().err
    assert main(["train", "--out", str(trained_run), "--resume", "--lr", "0.5"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert (trained_run / "supernet.pt").stat().st_mtime_ns == stamp


def test_train_bad_input_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--data-root" in err and err.count("\n") == 1
    assert main(["train", "--w-choices", "two", "--out", str(tmp_path / "y")]) == 2
    assert main(["train", "--schedule", "annealed", "--out", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_train_epochs_0_scores_and_stores_the_start(tmp_path, capsys) -> None:
    out = tmp_path / "start"
    small = [*TINY_TRAIN, "--lr", "0.01", "--out", str(out)]
    small[small.index("--epochs") + 1] = "0"
    small[small.index("--fp-epochs") + 1] = "3"
    assert main(small) == 0
    assert "before training (epoch 0)" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["phase"] for entry in log] == ["fp", "fp", "fp", "start"]
    start = log[-1]
    assert start["acc_fp"] > 50  # pretrained: the 8/8 score below means something
    checkpoint = torch.load(out / "supernet.pt", weights_only=True)
    assert checkpoint["kind"] == "supernet" and checkpoint["epoch"] == 0
    assert checkpoint["history"] == log
    # eval scores the stored start as the run did (the first form, the held-out images)
    table = tmp_path / "w8a8.json"
    argv = ["eval", "--supernet", str(out / "supernet.pt"), "--split", "holdout"]
    assert main([*argv, "--uniform", "8/8", "--json", str(table), "--no-progress"]) == 0
    scores = {row["form"]: row["accuracy"] for row in json.loads(table.read_text()).values()}
    assert scores["channel-sym-sym"] == pytest.approx(start["acc_largest"])
    # resuming it has no epoch left to run: the checkpoint stays as it is
    before = (out / "supernet.pt").read_bytes()
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert (out / "supernet.pt").read_bytes() == before
    # nothing to start from: refused in one line
    capsys.readouterr()
    alone = [*TINY_TRAIN, "--out", str(tmp_path / "nothing")]
    alone[alone.index("--epochs") + 1] = "0"
    alone[alone.index("--fp-epochs") + 1] = "0"
    assert main(alone) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: epochs 0 trains no supernet") and err.count("\n") == 1
    assert not (tmp_path / "nothing").exists()


def test_eval_model_scores_a_plain_state_dict_at_full_precision(tmp_path, capsys) -> None:
    from supernet.evaluation.evaluate import checkpoint_data
    from supernet.files.checkpoint import load_supernet

    out = tmp_path / "fp"
    small = [*TINY_TRAIN, "--lr", "0.01", "--no-start-eval", "--out", str(out)]
    small[small.index("--fp-epochs") + 1] = "3"
    assert main(small) == 0
    supernet, checkpoint = load_supernet(out / "fp.pt")
    model = supernet.model.eval()
    # the user's file: torchvision-style keys (no quantizers), nested and prefixed by DDP
    state = {k: v for k, v in model.state_dict().items() if ".quantizer." not in k}
    plain = tmp_path / "weights.pth"
    torch.save({"model": {f"module.{key}": value for key, value in state.items()}}, plain)
    cut = tmp_path / "cut.pth"
    torch.save(dict(list(state.items())[1:]), cut)
    correct = seen = 0
    with torch.no_grad():
        for images, labels in checkpoint_data(checkpoint).scoring("test", None).batches():
            correct += int((model(images).argmax(dim=1) == labels).sum())
            seen += len(labels)
    capsys.readouterr()
    table = tmp_path / "fp.json"
    argv = ["eval", "--supernet", str(plain), "--model", "tiny_convnet", "--dataset", "digits"]
    assert main([*argv, "--json", str(table)]) == 0
    assert "full-precision weights" in capsys.readouterr().out
    scores = json.loads(table.read_text())
    assert scores["accuracy"] == pytest.approx(100.0 * correct / seen)
    assert scores["accuracy"] > 50
    assert 0 < scores["accuracy_bn_recalibrated"] <= 100
    for extra, message in [
        (["--uniform", "8/8"], "drop --uniform"),
        (["--supernet", str(cut)], "--supernet " + str(cut) + " does not fit the tiny_convnet"),
    ]:
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert main(argv[:-2]) == 2
    assert "give --dataset" in capsys.readouterr().err


def test_eval_table_uniform_and_config(trained_run, tmp_path, capsys) -> None:
    checkpoint = str(trained_run / "supernet.pt")
    assert main(["eval", "--supernet", checkpoint, "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    for row in ("W8/A8", "W4/A4", "W2/A2", "FP32", "channel-sym-sym", "tensor-asym-asym"):
        assert row in out
    import json

    table = json.loads((tmp_path / "t.json").read_text())
    assert set(table) == {"W8/A8", "W4/A4", "W2/A2", "FP32"}
    assert all(0 <= v <= 100 for row in table.values() for v in row.values())
    assert (
        main(
            [
                "eval",
                "--supernet",
                checkpoint,
                "--uniform",
                "4/4",
                "--form",
                "tensor-asym-asym",
                "--split",
                "holdout",
            ]
        )
        == 0
    )
    assert "tensor-asym-asym" in capsys.readouterr().out
    from supernet.files.checkpoint import load_supernet

    supernet, _ = load_supernet(checkpoint)
    config_path = tmp_path / "cfg.json"
    config_path.write_text(supernet.space.uniform(2, 8).to_json())
    assert main(["eval", "--supernet", checkpoint, "--subnet", str(config_path)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_eval_errors_exit_2(trained_run, tmp_path, capsys) -> None:
    assert main(["eval", "--supernet", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    checkpoint = str(trained_run / "supernet.pt")
    assert main(["eval", "--supernet", checkpoint, "--uniform", "3/3"]) == 2
    assert "w_bits 3" in capsys.readouterr().err
    assert main(["eval", "--supernet", checkpoint, "--form", "channel-sym"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"choices": [{"w_bits": 4, "a_bits": 4, "form": "channel-sym-sym"}]}')
    assert main(["eval", "--supernet", checkpoint, "--subnet", str(bad)]) == 2
    assert "layer choices" in capsys.readouterr().err


def test_help_and_version_do_not_import_torch() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from eqsearch.app.cli import main\n"
        "for argv in (['--help'], ['nsga', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert "eqsearch 0.1.0" in result.stdout and "--force" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_openmp_threads_sleep_on_a_busy_machine_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eqsearch.app.cli import prefer_passive_openmp

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    prefer_passive_openmp(load=0.4, cores=2)  # quiet: spinning is faster
    assert "OMP_WAIT_POLICY" not in os.environ
    prefer_passive_openmp(load=6.0, cores=2)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_openmp(load=6.0, cores=2)
    assert main(["models"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_an_unexpected_failure_is_one_line_and_exit_1_unless_debugging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eqsearch.app.cli as cli

    def broken(args: object) -> int:
        raise TypeError("an internal bug")

    monkeypatch.setattr(cli, "_cmd_models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected TypeError: an internal bug" in err
    assert "Traceback" not in err and "--debug" in err
    assert main(["models", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValueError("an internal invariant broke"), 1),
        (InputError("--w-bits must be in 2..8"), 2),
    ],
)
def test_only_bad_input_exits_2_a_stray_value_error_is_a_bug(
    error: Exception, code: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eqsearch.app.cli as cli

    def failing(args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_models", failing)
    assert main(["models"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(error) in err
    assert ("this is a bug" in err) == (code == 1)


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from eqsearch.app.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(study_options=True), "eqsearch")
    assert missing == []


RENAMED_OPTIONS = [
    # (the command's arguments, old name, new name, value, destination)
    (["eval", "--supernet", "s.pt"], "--config", "--subnet", "c.json", "subnet"),
    (
        ["export", "--supernet", "s.pt", "--output", "m.onnx"],
        "--config",
        "--subnet",
        "c.json",
        "subnet",
    ),
    (["export", "--supernet", "s.pt"], "--out", "--output", "m.onnx", "output"),
    (["fit-predictor", "--samples", "s.csv"], "--out", "--output", "p.json", "output"),
    (["latency", "build", "--supernet", "s.pt"], "--out", "--output", "t.json", "output"),
    (["runtime", "probe", "--runtime", "onnxruntime"], "--out", "--output", "p.json", "output"),
    (
        ["runtime", "probe", "--runtime", "onnxruntime"],
        "--w-bits",
        "--w-choices",
        "4,8",
        "w_choices",
    ),
    (
        ["runtime", "probe", "--runtime", "onnxruntime"],
        "--a-bits",
        "--a-choices",
        "4,8",
        "a_choices",
    ),
    (["train", "--out", "run"], "--w-bits", "--w-choices", "4,8", "w_choices"),
    (["train", "--out", "run"], "--a-bits", "--a-choices", "4,8", "a_choices"),
    (["train", "--out", "run"], "--bn-images", "--calib-images", "64", "bn_images"),
]


@pytest.mark.parametrize(("command", "old", "new", "value", "dest"), RENAMED_OPTIONS)
def test_a_renamed_option_still_works_and_warns_once(
    command: list[str],
    old: str,
    new: str,
    value: str,
    dest: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eqsearch import errors
    from eqsearch.app.cli import build_parser

    monkeypatch.setattr(errors, "_WARNED", set())
    parser = build_parser()
    current = parser.parse_args([*command, new, value])
    assert capsys.readouterr().err == ""
    renamed = parser.parse_args([*command, old, value, old, value])
    assert getattr(renamed, dest) == getattr(current, dest)
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {old} is now {new} here (the old name will be removed)"
    ]


def test_export_refuses_a_bad_request_by_its_flags(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["export", "--supernet", str(tmp_path / "s.pt")]
    for extra, message in [
        (["--output", "m.onnx"], "give --subnet or uniform bits"),
        (["--uniform", "4/4", "--output", "m.npz"], "got --output m.npz"),
        (
            ["--uniform", "4/4", "--output", "m.onnx", "--min-agreement", "101"],
            "--min-agreement must",
        ),
        (["--subnet", "c.json", "--form", "channel-sym-sym", "--output", "m.onnx"], "drop --form"),
    ]:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_requests_name_their_fields_for_a_notebook() -> None:
    from eqsearch.app.evaluating import EvalRequest
    from eqsearch.app.exporting import ExportRequest

    with pytest.raises(InputError, match="drop uniform") as raised:
        EvalRequest(supernet="s.pt", subnet="c.json", uniform="4/4")
    assert raised.value.field == "uniform"
    with pytest.raises(InputError, match="min_agreement must be a percentage") as raised:
        ExportRequest(supernet="s.pt", output="m.onnx", uniform="4/4", min_agreement="nan")
    assert raised.value.field == "min_agreement"
    request = ExportRequest(supernet="s.pt", output="m.onnx", uniform="4/4", min_agreement="99")
    assert request.min_agreement == 99.0
