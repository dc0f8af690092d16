"""Optuna tuning: shared storage across worker processes, continuation, determinism, pruning."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from studies.tune_loss_weights import (
    BEST_CONFIG_NAME,
    PLOT_NAMES,
    TuneConfig,
    make_objective,
    open_study,
    shared_fp_checkpoint,
    suggest_config,
    trial_line,
    tune_loss_weights,
)
from supernet.training.config import TrainConfig

BASE = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    w_bits=(2, 8),
    a_bits=(2, 8),
    holdout=100,
    bn_images=100,
    quant_init_images=64,
    batch_size=64,
    fp_epochs=1,
    # One form keeps the probe set at two subnets (2/2 and 8/8): seconds per trial.
    granularities=("channel",),
    w_symmetries=(True,),
    a_symmetries=(True,),
)


def test_objective_is_deterministic_for_a_fixed_trial(tmp_path: Path) -> None:
    tune = TuneConfig(base=BASE, out_dir=str(tmp_path), epochs=1, probe_mixed=1)
    params = {
        "gpg_weight": 0.4,
        "wdr_skew_weight": 0.1,
        "wdr_kurtosis_weight": 0.01,
        "target_kurtosis": 1.8,
        "lr": 3e-3,
    }
    objective = make_objective(tune)
    first = objective(optuna.trial.FixedTrial(params))
    second = objective(optuna.trial.FixedTrial(params))
    assert first == second
    assert 0.0 <= first <= 100.0
    different = objective(optuna.trial.FixedTrial({**params, "lr": 1e-4}))
    assert different != first


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_pruned_trials_stop_training_early(tmp_path: Path) -> None:
    tune = TuneConfig(base=BASE, out_dir=str(tmp_path), trials=1, epochs=3, probe_mixed=0)
    study = open_study(tune)
    study.pruner = _AlwaysPrune()
    study.optimize(make_objective(tune), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs_trained"] == 1  # of 3
    assert list(trial.intermediate_values) == [0]
    line = trial_line(trial)
    assert line.startswith("trial 0: pruned after epoch 1 (last probe mean ")
    assert f"{trial.intermediate_values[0]:.2f}" in line


def test_two_objectives_and_best_config(tmp_path: Path) -> None:
    tune = TuneConfig(
        base=BASE, out_dir=str(tmp_path), trials=2, epochs=1, objectives="two", probe_mixed=0
    )
    result = tune_loss_weights(tune)
    assert len(result.study.trials) == 2
    assert {"lowest_bits", "highest_bits"} <= set(result.trials.columns)
    assert [path.name for path in result.plots] == list(PLOT_NAMES)
    for path in result.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert all(
        trial_line(t).startswith(f"trial {t.number}: complete (") for t in result.study.trials
    )
    best = TrainConfig.from_json(tmp_path / BEST_CONFIG_NAME)
    assert best.epochs == BASE.epochs  # the full training length, not the trial's
    assert best.gpg_weight in [t.params["gpg_weight"] for t in result.study.trials]
    with pytest.raises(ValueError, match="objectives"):
        replace(tune, objectives="three")


@pytest.mark.slow
def test_two_worker_processes_share_one_storage_and_a_rerun_continues(tmp_path: Path) -> None:
    config_path = tmp_path / "base.json"
    BASE.to_json(config_path)
    command = [
        sys.executable,
        "-m",
        "studies.tune_loss_weights",
        "--config",
        str(config_path),
        "--out",
        str(tmp_path / "study"),
        "--trials",
        "2",
        "--epochs",
        "1",
    ]
    # One thread each: two workers share this machine's cores.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [*command, "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-2000:]
    tune = TuneConfig(base=BASE, out_dir=str(tmp_path / "study"), trials=0)
    study = open_study(tune)
    assert len(study.trials) == 4
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    rerun = subprocess.run(
        [*command, "--trials", "1", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(open_study(tune).trials) == 5
    assert (tmp_path / "study" / BEST_CONFIG_NAME).is_file()
    # FP pretraining ran once for the whole study; trials started from it.
    assert (tmp_path / "study" / "fp.pt").is_file()


def test_trials_share_one_fp_pretraining(tmp_path: Path) -> None:
    tune = TuneConfig(base=BASE, out_dir=str(tmp_path), epochs=1, probe_mixed=0)
    first = shared_fp_checkpoint(tune)
    assert first == tmp_path / "fp.pt"
    stamp = first.stat().st_mtime_ns
    assert shared_fp_checkpoint(tune) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not retrained
    trial = optuna.trial.FixedTrial(
        {
            "gpg_weight": 0.5,
            "wdr_skew_weight": 0.1,
            "wdr_kurtosis_weight": 0.01,
            "target_kurtosis": 1.8,
            "lr": 1e-3,
        }
    )
    config = suggest_config(trial, tune, first)
    assert (config.init, config.fp_epochs, config.epochs) == (str(first), 0, 1)
    assert shared_fp_checkpoint(replace(tune, base=replace(BASE, fp_epochs=0))) is None
