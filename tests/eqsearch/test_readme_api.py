"""The README's Python example runs as written and finds what it prints."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_api_example_runs(capsys) -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- api example[^\n]*\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the README lost its Python example"
    exec(compile(match.group(1), "README", "exec"), {})
    size, within_budget = capsys.readouterr().out.split()
    assert int(size) >= 5 and within_budget == "True"
