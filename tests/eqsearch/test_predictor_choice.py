"""`nsga` and `strategy` name the predictor file they search on, record it and warn on a low τ."""

from __future__ import annotations

import hashlib
import json
import os
import shlex

import numpy as np
import pytest

from eqsearch.app.cli import main
from predictors import build_predictor
from predictors.fitting import metrics_path
from predictors.provenance import LOW_TAU, held_out_tau, predictor_source

from .search_fixtures import enumerable_space, space_only_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint with a space and no weights: enough for a search on a predictor."""
    return space_only_checkpoint(tmp_path)


def _save_predictor(path, backend: str, tau: float | None, *, mtime: int) -> str:
    """Fit a predictor on made-up accuracies, save it at ``path`` with a metrics report
    holding ``tau`` (none for None); returns the file's SHA-256."""
    space = enumerable_space()
    configs = list(space.sample(np.random.default_rng(0), 40))
    accuracy = np.random.default_rng(1).uniform(90, 99, len(configs))
    build_predictor(backend, space).fit(configs, accuracy).save(path)
    if tau is not None:
        report = {"backend": backend, "metrics": {"kendall_tau": tau, "rmse": 1.0}}
        metrics_path(path).write_text(json.dumps(report))
    os.utime(path, ns=(mtime, mtime))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nsga(checkpoint, extra: str = "") -> int:
    out = checkpoint.parent / "front"
    arguments = (
        f"nsga --supernet {checkpoint} --w-bits 4 --population 8 --generations 2 "
        f"--out {out} --no-progress --force {extra}"
    )
    return main(shlex.split(arguments))


def test_nsga_names_the_newest_predictor_records_it_and_warns_on_a_low_tau(
    checkpoint, capsys
) -> None:
    run = checkpoint.parent
    _save_predictor(run / "predictor-mlp.json", "ridge", 0.8, mtime=1_000_000_000)
    digest = _save_predictor(run / "predictor-ridge.json", "ridge", -0.07, mtime=2_000_000_000)
    assert _nsga(checkpoint) == 0
    captured = capsys.readouterr()
    assert (
        "predictor (newest beside the checkpoint): predictor-ridge.json (ridge, held-out τ "
        "-0.07)" in captured.out
    )
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: predictor predictor-ridge.json")
    assert "-0.07 (below 0.3)" in warnings[0]
    info = json.loads((run / "front" / "pareto.json").read_text())["info"]
    assert info["predictor"] == {
        "path": "predictor-ridge.json",
        "backend": "ridge",
        "sha256": digest,
        "tau": -0.07,
    }


def test_a_given_predictor_is_recorded_as_given_without_a_warning(checkpoint, capsys) -> None:
    elsewhere = checkpoint.parent.parent / "fits" / "good.json"
    elsewhere.parent.mkdir()
    digest = _save_predictor(elsewhere, "ridge", 0.72, mtime=1_000_000_000)
    assert _nsga(checkpoint, f"--predictor {elsewhere}") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"predictor (given): {elsewhere} (ridge, held-out τ 0.72)" in captured.out
    info = json.loads((checkpoint.parent / "front" / "pareto.json").read_text())["info"]
    assert info["predictor"] == {
        "path": str(elsewhere),
        "backend": "ridge",
        "sha256": digest,
        "tau": 0.72,
    }


def test_a_strategy_on_a_predictor_records_it(checkpoint, capsys) -> None:
    _save_predictor(checkpoint.parent / "predictor-ridge.json", "ridge", 0.1, mtime=10**9)
    out = checkpoint.parent / "uniform"
    arguments = (
        f"strategy uniform --supernet {checkpoint} --oracle predictor --out {out} --no-progress"
    )
    assert main(shlex.split(arguments)) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: ") == 1 and "τ 0.10" in captured.err
    info = json.loads((out / "pareto.json").read_text())["info"]
    assert info["predictor"]["path"] == "predictor-ridge.json" and info["predictor"]["tau"] == 0.1


def test_a_predictor_without_metrics_has_no_tau_and_no_warning(tmp_path) -> None:
    path = tmp_path / "predictor-ridge.json"
    _save_predictor(path, "ridge", None, mtime=10**9)
    source = predictor_source(path, "ridge", relative_to=tmp_path)
    assert source.path == "predictor-ridge.json" and source.tau is None
    assert source.warning() is None and "no held-out metrics" in source.describe()
    metrics_path(path).write_text("{not json")
    assert held_out_tau(path) is None
    metrics_path(path).write_text(json.dumps({"metrics": {"kendall_tau": LOW_TAU}}))
    assert held_out_tau(path) == LOW_TAU and predictor_source(path, "ridge").warning() is None
