"""``eqsearch sample`` / ``fit-predictor`` on a real tiny supernet: kill -9, shards, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqsearch.app.cli import main
from eqsearch.app.measure import sample_subnets
from predictors import find_predictor, load_predictor, load_samples
from predictors.samples.sidecars import read_samples_space

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _data_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:] if path.exists() else []


def test_kill_9_during_sample_then_rerun_gives_exactly_n_unique_rows(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    n = 60
    command = [sys.executable, "-m", "eqsearch", "sample", "--supernet", str(tiny_checkpoint)]
    command += ["--subnets", str(n), "--output", str(out), "--seed", "3", "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=environment)
    try:
        deadline = time.monotonic() + 120
        while len(_data_rows(out)) < 5 and time.monotonic() < deadline:
            assert process.poll() is None, "eqsearch sample ended before it could be killed"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = len(_data_rows(out))
    assert 5 <= killed_at < n
    finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    rows = _data_rows(out)
    assert len(rows) == len(set(rows)) == n
    assert sorted(int(row.split(",", 1)[0]) for row in rows) == list(range(n))
    space = read_samples_space(out)
    assert space is not None
    configs, accuracies = load_samples(out, space)
    assert len({config.to_json() for config in configs}) == n
    assert ((accuracies >= 0) & (accuracies <= 100)).all()


def test_shards_with_the_supernet_oracle_merge_into_the_unsharded_set(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    whole = sample_subnets(tiny_checkpoint, tmp_path / "a" / "s.csv", 8, seed=1, progress=False)
    for index in range(2):
        run = sample_subnets(
            tiny_checkpoint, tmp_path / "b" / "s.csv", 8, seed=1, shard=(index, 2), progress=False
        )
    assert run.merged == tmp_path / "b" / "s.csv"

    def rows(path: Path) -> list[str]:
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    assert rows(run.merged) == rows(whole.path)


def test_fit_predictor_command_saves_beside_the_samples(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.csv"
    sample_subnets(tiny_checkpoint, samples, 24, seed=0, progress=False)
    options = ["--option", "n_estimators=20", "--test-fraction", "0.25"]
    code = main(["fit-predictor", "--samples", str(samples), "--backend", "xgboost", *options])
    output = capsys.readouterr().out
    assert code == 0
    for name in ("kendall_tau", "spearman", "pearson", "rmse", "trained on 18 subnets"):
        assert name in output
    saved = find_predictor(tmp_path)
    assert saved == tmp_path / "predictor-xgboost.json"
    assert load_predictor(saved).options_dict()["n_estimators"] == 20
    report = json.loads((tmp_path / "predictor-xgboost.metrics.json").read_text())
    assert (report["n_train"], report["n_test"], report["held_out_fraction"]) == (18, 6, 0.25)
    assert f"{report['metrics']['kendall_tau']:.4f}" in output
    assert main(["fit-predictor", "--samples", str(samples), "--backend", "xgboost"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


def test_bad_input_exits_2_and_writes_nothing(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    samples = tmp_path / "samples.csv"
    samples.write_text("config,accuracy\n")
    cases = [
        ["sample", "--supernet", str(tmp_path / "missing.pt")],
        ["sample", "--supernet", str(tiny_checkpoint), "--shard", "3/2", "--output", str(notes)],
        ["sample", "--supernet", str(tiny_checkpoint), "--subnets", "5", "--output", str(notes)],
        [
            "sample",
            "--supernet",
            str(tiny_checkpoint),
            "--strategy",
            "grid",
            "--output",
            str(notes),
        ],
        ["fit-predictor", "--samples", str(tmp_path / "nope.csv")],
        ["fit-predictor", "--samples", str(samples), "--backend", "svm"],
        ["fit-predictor", "--samples", str(samples), "--output", str(notes)],
        ["fit-predictor", "--samples", str(samples), "--supernet", str(tiny_checkpoint)],
        ["fit-predictor", "--samples", str(samples), "--option", "depth"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, (argv, error)
    assert notes.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "samples.csv"]
