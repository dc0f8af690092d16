"""The predictor comparison study: every backend cross-validated, a table and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from predictors.samples.collect import collect_samples
from predictors.samples.settings import SamplingConfig
from studies.compare_predictors import add_arguments, compare_predictors, main, run_from_args
from tests.conftest import make_space
from tests.predictors.conftest import FormulaOracle

FAST = {"mlp": {"epochs": 30, "width": 16}, "xgboost": {"n_estimators": 30}}


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    space = make_space()
    path = tmp_path / "samples.csv"
    collect_samples(FormulaOracle(space), space, path, SamplingConfig(n=80, seed=0))
    return path


def test_every_backend_is_cross_validated(samples: Path, tmp_path: Path) -> None:
    result = compare_predictors(samples, folds=4, options=FAST, out_dir=tmp_path / "out")
    assert list(result.table.index) == ["mlp", "xgboost", "ridge"]
    expected = {"kendall_tau", "spearman", "pearson", "rmse", "top10", "fit_seconds"}
    assert expected < set(result.table.columns)
    # the formula is linear in the one-hot features: ridge recovers it almost exactly
    assert result.table.loc["ridge", "pearson"] > 0.99
    for predicted in result.predictions.values():
        assert predicted.shape == result.measured.shape and np.isfinite(predicted).all()
    assert "| ridge |" in result.markdown
    assert result.plot is not None and result.plot.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "predictors.md").read_text().startswith("| backend |")


def test_command_line_entry(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--samples", str(samples), "--backends", "ridge", "--folds", "3", "--out", str(tmp_path)]
    )
    assert run_from_args(args) == 0
    assert "| ridge |" in capsys.readouterr().out
    assert main(["--samples", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: samples file not found")
    assert main(["--samples", str(samples), "--backends", "svm"]) == 2
