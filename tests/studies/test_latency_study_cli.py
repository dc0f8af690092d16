"""`eqsearch study latency` follows the output rule: --force to replace, --no-progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqsearch.app.cli import main


def test_an_earlier_report_is_kept_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "latency.md").write_text("# an earlier report\n")
    arguments = ["study", "latency", "--out", str(out), "--runtimes", "none", "--no-progress"]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err
    assert (out / "latency.md").read_text() == "# an earlier report\n"
    # with --force the study goes on to its own checks (no such runtime here)
    assert main([*arguments, "--force"]) == 2
    assert "none of the runtimes none is installed" in capsys.readouterr().err
