"""``eqsearch study all --quick``: every stage at toy sizes, its reports and summary."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from eqsearch.app.cli import main as eqsearch_main
from eqsearch.errors import InputError
from studies.results.run_all import run_all, select_stages
from studies.results.stages import STAGES, Stage
from studies.results.tables import SeedTable

CELL = re.compile(r"^-?\d+\.\d+( ± \d+\.\d+)?$|^-$")


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_study_all_quick_writes_every_report_and_the_summary(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    args = ["study", "all", "--out", str(out), "--quick", "--seeds", "2", "--no-progress"]
    stages = "demo,uniform-bits,predictors,strategies"
    assert eqsearch_main([*args, "--stages", stages]) == 0
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "eqsearch study all --out" in summary and "--quick" in summary
    rows = _table_rows(summary)
    names = [re.sub(r"\[(.*)\]\(.*\)", r"\1", row[0]) for row in rows]
    assert names == ["search", "demo-predictors", "uniform-bits", "predictors", "strategies"]
    for row in rows:
        assert row[2] == "0, 1"  # seeds
        assert re.fullmatch(r"\d+\.\d min", row[3])
        commit = r"([0-9a-f]{7,}(\+modified)?|eqsearch .+|unknown)"
        assert re.fullmatch(rf"{commit}(, {commit})*", row[4])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row[5])

    uniform = (out / "uniform-bits" / "uniform-bits.md").read_text(encoding="utf-8")
    assert "docs/training.md" in uniform and "over 2 seeds" in uniform
    assert "binomial standard error" in uniform
    body = _table_rows(uniform)
    assert [row[0] for row in body] == ["W8/A8", "W4/A4", "W2/A2", "FP32"]
    for row in body:
        for cell in row[1:]:
            assert CELL.match(cell), cell
            mean = float(cell.split(" ± ")[0])
            assert 0.0 <= mean <= 100.0

    strategies = _table_rows((out / "strategies" / "strategies.md").read_text(encoding="utf-8"))
    assert len(strategies) == 8
    hypervolumes = [float(row[2].split(" ± ")[0]) for row in strategies]
    assert all(value >= 0.0 for value in hypervolumes)

    # A rerun reads every finished seed back instead of measuring it again.
    before = (out / "demo" / "tables-seed-1.json").stat().st_mtime_ns
    assert eqsearch_main([*args, "--stages", "demo"]) == 0
    assert (out / "demo" / "tables-seed-1.json").stat().st_mtime_ns == before
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_resnet20_stage_trains_samples_and_studies_each_seed_once(tmp_path) -> None:
    lines: list[str] = []
    (stage,) = select_stages("strategies-resnet20")
    result = run_all(tmp_path, seeds=1, stages=[stage], quick=True, command="c", log=lines.append)
    assert not result.failed
    run = tmp_path / "resnet20" / "seed-0"
    assert len(pd.read_csv(run / "samples.csv")) == 24
    body = _table_rows(
        (tmp_path / "strategies-resnet20" / "strategies-resnet20.md").read_text(encoding="utf-8")
    )
    assert len(body) == 8 and body[4][0] == "uniform W/A"
    assert float(body[4][1].split(" ± ")[0]) == 49.0  # every W/A pair of 2..8 bits
    # The supernet and its samples are kept: a forced rerun resumes instead of training again.
    trained = (run / "supernet.pt").stat().st_mtime_ns
    run_all(
        tmp_path, seeds=1, stages=[stage], quick=True, force=True, command="c", log=lines.append
    )
    assert (run / "supernet.pt").stat().st_mtime_ns == trained


@pytest.mark.slow
def test_finetune_stage_reads_each_recipe_run_by_epoch_and_on_the_test_split(
    tmp_path, monkeypatch
) -> None:
    from studies.results import finetune

    recipes = dict(list(finetune.FINETUNE_FLAGS.items())[:2])
    monkeypatch.setattr(finetune, "FINETUNE_FLAGS", recipes)
    (stage,) = select_stages("finetune-resnet20")
    result = run_all(tmp_path, seeds=1, stages=[stage], quick=True, command="c", log=print)
    assert not result.failed
    held_out = _table_rows(
        (tmp_path / "finetune-resnet20" / "finetune-resnet20.md").read_text(encoding="utf-8")
    )
    assert [row[0] for row in held_out] == list(recipes)
    # The second recipe's row is its log's W8A8 by epoch (the FP run's weights, 3 epochs).
    run = tmp_path / "finetune-resnet20" / "seed-0" / "run-1"
    entries = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    logged = [e["acc_largest"] for e in entries if e.get("phase") == "supernet"]
    assert len(logged) == 3
    expected = [logged[0], logged[1], min(logged), logged[-1]]
    assert [float(cell) for cell in held_out[1][1:]] == pytest.approx(expected, abs=0.006)
    test = _table_rows(
        (tmp_path / "finetune-resnet20" / "finetune-resnet20-test.md").read_text(encoding="utf-8")
    )
    assert len(test) == 2 and all(0.0 <= float(cell) <= 100.0 for row in test for cell in row[1:])


def test_stages_name_their_docs_page_and_command() -> None:
    names = [stage.name for stage in STAGES]
    assert names[0] == "demo" and len(set(names)) == len(names)
    for stage in STAGES:
        assert stage.docs.startswith("docs/") and stage.docs.endswith(".md")
        assert stage.command.startswith(("eqsearch ", "python -m studies."))


def test_select_stages_keeps_run_order_and_refuses_unknown_names() -> None:
    assert [s.name for s in select_stages("strategies,demo")] == ["demo", "strategies"]
    with pytest.raises(InputError, match="must name stages"):
        select_stages("demo,nope")


def test_study_all_refuses_a_bad_stage_name_on_the_command_line(tmp_path, capsys) -> None:
    code = eqsearch_main(["study", "all", "--out", str(tmp_path), "--stages", "nope"])
    assert code == 2
    assert "--stages must name stages" in capsys.readouterr().err


def _fake_stage(
    name: str, values: dict[int, float], fail: bool = False, calls: list[int] | None = None
) -> Stage:
    def run(root, seed, quick, log):  # type: ignore[no-untyped-def]
        if calls is not None:
            calls.append(seed)
        if fail:
            raise RuntimeError("broken on purpose")
        frame = pd.DataFrame({"top-1": [values[seed]], "count": [3.0]}, index=["method"])
        return {name: SeedTable(frame, 1000, ("top-1",))}

    return Stage(name, "a fake table", "docs/results.md", "fake --seed {seed}", run)


def test_run_all_aggregates_seeds_and_goes_on_past_a_failed_stage(tmp_path) -> None:
    calls: list[int] = []
    good = _fake_stage("good", {0: 97.0, 1: 98.0, 2: 99.0}, calls=calls)
    bad = _fake_stage("bad", {}, fail=True)
    lines: list[str] = []
    result = run_all(tmp_path, seeds=3, stages=[bad, good], command="cmd", log=lines.append)
    assert result.failed == {"bad": "RuntimeError: broken on purpose"}
    assert [stage.stage.name for stage in result.stages] == ["good"]
    report = (tmp_path / "good" / "good.md").read_text(encoding="utf-8")
    assert _table_rows(report) == [["method", "98.00 ± 1.00", "3.00 ± 0.00"]]
    assert "over 3 seeds" in report and "1000 images" in report
    assert "`fake --seed 0; fake --seed 1; fake --seed 2`" in report
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Stage `bad` failed: RuntimeError: broken on purpose" in summary
    assert _table_rows(summary)[0][2] == "0, 1, 2"
    assert "`fake --seed S`" in summary
    assert calls == [0, 1, 2]

    # A rerun reads the finished seeds back; --force measures them again.
    again = run_all(tmp_path, seeds=3, stages=[good], command="cmd", log=lines.append)
    assert calls == [0, 1, 2] and not again.failed
    assert (tmp_path / "good" / "good.md").read_text(encoding="utf-8") == report
    run_all(tmp_path, seeds=2, stages=[good], force=True, command="cmd", log=lines.append)
    assert calls == [0, 1, 2, 0, 1]
