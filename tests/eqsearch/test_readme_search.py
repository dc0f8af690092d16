"""The README's custom-objective example runs (on a tiny stand-in for the demo's run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from .search_fixtures import enumerable_space

README = Path(__file__).resolve().parents[2] / "docs" / "search.md"
MARKER = "<!-- custom-objective example"


def _example() -> str:
    text = README.read_text()
    assert MARKER in text, "docs/search.md lost its custom-objective example"
    block = text.split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", block, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_custom_objective_example_runs(tmp_path, monkeypatch) -> None:
    predictors = pytest.importorskip("predictors")
    code = _example()
    run = tmp_path / "eqsearch-demo" / "run"
    run.mkdir(parents=True)
    space = enumerable_space()
    torch.save(
        {
            "format": "eqsearch-supernet",
            "version": 1,
            "kind": "supernet",
            "build_info": {},
            "space": space.to_dict(),
            "state_dict": {},
        },
        run / "supernet.pt",
    )
    batch = space.sample(0, 50)
    accuracy = 90.0 - (8 - batch.w_bits).sum(axis=1) - (8 - batch.a_bits).sum(axis=1) / 2
    predictor = predictors.build_predictor("ridge", space).fit(batch, accuracy)
    predictor.save(run / predictors.predictor_filename("ridge"))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    # the stand-in space's pinned stem alone reads 3072 bytes of input
    code = code.replace("generations=200", "generations=10").replace("2048", "3500")
    exec(compile(code, "README", "exec"), namespace)
    front = namespace["front"]
    assert (tmp_path / "latency-front.png").is_file()
    frame = front.to_frame()  # type: ignore[attr-defined]
    assert list(frame.columns[:2]) == ["accuracy", "latency_us"]
    assert (frame["w_bits"] <= 4.0).all()
    peak = namespace["peak_activation_bytes"](front.batch)  # type: ignore[attr-defined,operator]
    assert (np.asarray(peak) <= 3500).all()
