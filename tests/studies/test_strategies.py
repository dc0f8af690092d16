"""The strategies study at toy size: every row measured, counted, timed; files written."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from eqsearch.app.cli import main as eqsearch_main
from studies.front_search import FrontSearch
from studies.strategies import StrategyStudySettings, main, run_strategy_study
from studies.strategies_report import best_accuracy_at, front_hypervolume
from tests.eqsearch.test_strategy_cli import checkpoint  # noqa: F401 - the tiny supernet

TINY = StrategyStudySettings(
    budgets=3,
    refine=1,
    backend="ridge",
    search=FrontSearch(population=8, generations=2, verify=2),
    hessian_images=32,
    hessian_probes=2,
    sample_count=24,
)


@pytest.mark.slow
def test_every_strategy_is_measured_counted_and_reported(
    checkpoint: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

    lines: list[str] = []
    study = run_strategy_study(checkpoint, tmp_path, TINY, log=lines.append)
    names = [outcome.name for outcome in study.outcomes]
    assert names == [
        "ilp-hessian",
        "greedy-hessian",
        "ilp-measured",
        "greedy-measured",
        "uniform",
        "random",
        "nsga2",
        "nsga2-refined",
    ]
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="holdout")
    space = supernet.space
    oracle = supernet_oracle(supernet, evaluation)
    by_name = {outcome.name: outcome for outcome in study.outcomes}
    # the samples were measured into the study's directory (none beside the checkpoint)
    assert (tmp_path / "samples.csv").is_file()
    for outcome in study.outcomes:
        # every front value is a measurement on the scoring images
        np.testing.assert_allclose(
            outcome.front.column("accuracy"), oracle.evaluate(outcome.front.configs)
        )
        assert outcome.hypervolume == pytest.approx(
            front_hypervolume(outcome.front, study.reference)
        )
        assert outcome.seconds > 0
        best = [outcome.best_at[b] for b in TINY.weight_budgets]
        assert all(a is None or b is None or a <= b for a, b in itertools.pairwise(best))
    # uniform: the 3×3 W/A configs of the one TensorRT form, both fronts from them
    assert by_name["uniform"].measurements == 9
    assert by_name["random"].measurements == TINY.verified
    # measured sensitivities cost 1 + 2 layers × (2 + 2) configs, counted in their rows
    for name in ("ilp-measured", "greedy-measured"):
        assert by_name[name].prior_measurements == 1 + 2 * 4
    for name in ("ilp-hessian", "greedy-hessian", "ilp-measured", "greedy-measured"):
        assert 1 <= by_name[name].measurements <= 2 * TINY.budgets
    assert by_name["ilp-hessian"].prior_measurements == 0
    assert by_name["ilp-hessian"].prior_seconds > 0  # the traces
    # both NSGA-II rows: the 24 samples before, at most K·(R+1) verified configs per front
    for name in ("nsga2", "nsga2-refined"):
        assert by_name[name].prior_measurements == 24
        assert 1 <= by_name[name].measurements <= 2 * TINY.verified
    assert best_accuracy_at([by_name["uniform"].front], 1.0) is None
    # the report, the plot and the numbers
    assert study.report.read_text().startswith("# Strategies on")
    assert "| ILP, Hessian (HAWQ) sensitivity |" in study.markdown
    assert "binomial standard error" in study.markdown
    assert study.plot.read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((tmp_path / "strategies.json").read_text())
    assert [entry["name"] for entry in payload["strategies"]] == names
    assert payload["scoring_images"] == len(evaluation.labels)
    assert len(lines) == 2 + len(names)
    assert space.fingerprint  # the study ran on the checkpoint's space


def test_command_line_entries_refuse_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--supernet", str(tmp_path / "missing.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: supernet checkpoint not found")
    assert eqsearch_main(["study", "strategies", "--supernet", "x.pt", "--refine", "-1"]) == 2
    assert "--refine must be >= 0" in capsys.readouterr().err
    out = tmp_path / "study"
    arguments = ["study", "strategies", "--supernet", "x.pt", "--out", str(out), "--budgets", "0"]
    assert eqsearch_main(arguments) == 2
    assert not out.exists()
