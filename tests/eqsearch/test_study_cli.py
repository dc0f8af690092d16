"""``eqsearch study``: bad options are usage errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqsearch.app.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ablations", "--parts", "wdr,dropout"], "parts must be a non-empty subset"),
        (["ablations", "--bits", "2,9"], "bits must be weight and activation bit widths"),
        (["ablations", "--bits", "two"], "--bits must be bit widths"),
        (["tune-loss", "--objectives", "three"], "invalid choice"),
        (["predictors", "--samples", "s.csv", "--option", "depth=4"], "BACKEND.KEY=VALUE"),
    ],
)
def test_bad_study_options_exit_2_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "study"
    assert main(["study", argv[0], "--out", str(out), *argv[1:]]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert message in error
    assert not out.exists()


def test_study_needs_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study"]) == 2
    assert "required: STUDY" in capsys.readouterr().err
