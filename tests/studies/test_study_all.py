"""``eqsearch study all --quick``: every stage at toy sizes, its reports and summary."""

from __future__ import annotations

import re

import pytest

from eqsearch.app.cli import main as eqsearch_main
from eqsearch.errors import InputError
from studies.results.run_all import select_stages
from studies.results.stages import STAGES

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
        assert re.fullmatch(r"([0-9a-f]{7,}(\+modified)?|eqsearch .+|unknown)", row[4])
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
