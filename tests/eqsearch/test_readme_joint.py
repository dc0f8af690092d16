"""The README's joint-space example runs and shows what it says."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "docs" / "space.md"
MARKER = "<!-- joint-space example"


def test_joint_space_example_runs(capsys) -> None:
    block = README.read_text().split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", block, re.DOTALL)
    assert match is not None
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), "README", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "{'depth': 1} 3"
    toy_small, toy_large = (float(v) for v in printed[1].split())
    assert toy_small < toy_large
    front = namespace["front"]
    frame = front.to_frame()  # type: ignore[attr-defined]
    assert (frame["macs"] <= 300e6).all() and len(frame) > 3
    space = namespace["space"]
    assert all(space.canonical(c) == c for c in front.configs)  # type: ignore[attr-defined]
