"""The DataLoader example of docs/own-data-and-fine-tuning.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-data-and-fine-tuning.md"
MARKER = "<!-- own-data example"


def _example() -> str:
    block = DOC.read_text().split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", block, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_dataloader_example_trains_and_logs_epoch_0_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)
    history = namespace["result"].history  # type: ignore[attr-defined]
    assert [entry["epoch"] for entry in history] == [0, 1, 2]
    assert history[0]["phase"] == "start" and history[0]["bits_smallest"] == [2, 2]
    assert history[1]["lr"] == pytest.approx(0.05)  # the warmup epoch ends at the peak
    assert history[2]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine to 0
    assert history[2]["acc_largest"] > history[0]["acc_largest"] + 20
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["0", "1", "2"]
    assert list(tmp_path.iterdir()) == []  # nothing written without out_dir
