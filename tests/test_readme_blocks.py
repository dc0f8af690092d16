"""Every Python block of the README and docs/ runs as written (on tiny stand-ins for a trained
run)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.supernet.tiny_run import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_ELSEWHERE = {
    "<!-- api example": "tests/eqsearch/test_readme_api.py",
    "<!-- joint-space example": "tests/eqsearch/test_readme_joint.py",
    "<!-- custom-objective example": "tests/eqsearch/test_readme_search.py",
    "<!-- own-data example": "tests/supernet/test_own_data_doc.py",
}
"""Blocks that a test of their own runs (the comment before the block names it)."""

SMALLER = {"n=1200, holdout=4000": "n=12, holdout=200", "budgets=20": "budgets=4"}
"""Sizes of a real run, cut to the tiny stand-in's (the code is otherwise as written)."""


def _blocks() -> list[tuple[str, str]]:
    """(the first line of code, the code) of each Python block the docs run here."""
    text = _text()
    found = []
    for match in re.finditer(r"(?:(<!--[^\n]*-->)\n)?```python\n(.*?)```", text, re.DOTALL):
        comment, code = match.group(1) or "", match.group(2)
        if any(comment.startswith(marker) for marker in RUN_ELSEWHERE):
            continue
        first = next(line for line in code.splitlines() if line.strip())
        found.append((first, code))
    return found


def _text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


BLOCKS = _blocks()


def test_the_blocks_run_elsewhere_are_still_marked() -> None:
    text = _text()
    for marker, test in RUN_ELSEWHERE.items():
        assert marker in text and (ROOT / test).is_file()
    assert len(BLOCKS) >= 6


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with ``run/supernet.pt`` (tiny, untrained) as the README's
    commands leave one."""
    (tmp_path / "run").mkdir()
    tiny_checkpoint(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[f for f, _ in BLOCKS])
def test_readme_block_runs(code: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if code.startswith("# mypackage/nets.py"):
        # a module of the user's: saved where it says, then named as the README names it
        package = workdir / "mypackage"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "nets.py").write_text(code)
        monkeypatch.syspath_prepend(str(workdir))
        code = (
            "from supernet import build_supernet\n"
            'supernet = build_supernet("mypackage.nets:squeezenet", num_classes=10)\n'
        )
    for real, tiny in SMALLER.items():
        code = code.replace(real, tiny)
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        exec(compile(code, "README", "exec"), namespace)
    finally:
        sys.modules.pop("mypackage.nets", None)
        sys.modules.pop("mypackage", None)
    supernet = namespace.get("supernet")
    if supernet is not None:  # what the block built is a supernet with elastic layers
        assert len(supernet.elastic_layers()) > 0  # type: ignore[attr-defined]
