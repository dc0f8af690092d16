"""The latency study: equal-accuracy speed-ups, and a whole run on tiny networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from studies.front_search import FrontSearch
from studies.latency import LatencyStudySettings, run_latency_study
from studies.latency_search import equal_accuracy_speedup


def test_equal_accuracy_speedup_compares_the_fastest_picks_at_each_accuracy() -> None:
    reference = (np.array([80.0, 90.0, 95.0]), np.array([2.0, 4.0, 8.0]))
    candidate = (np.array([85.0, 91.0, 94.0]), np.array([1.0, 2.0, 4.0]))
    # at 80 %: 2.0 / 1.0; at 90 %: 4.0 / 2.0; at 95 % the candidate has nothing
    assert equal_accuracy_speedup(reference, candidate) == (2.0, 2.0, 2.0)
    slower = (np.array([99.0]), np.array([16.0]))
    assert equal_accuracy_speedup(reference, slower) == pytest.approx((0.25, 0.125, 0.5))
    assert equal_accuracy_speedup(reference, (np.array([50.0]), np.array([1.0]))) is None


@pytest.mark.slow
def test_a_tiny_latency_study_writes_its_tables_report_and_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supernet import build_supernet, init_quantizers
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    monkeypatch.setenv("EQSEARCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=10,
        in_channels=1,
        image_size=8,
        w_bits=(4, 8),
        a_bits=(4, 8),
        granularities=("channel",),
        w_symmetries=(True,),
        a_symmetries=(True,),
    )
    init_quantizers(supernet, torch.randn(32, 1, 8, 8))
    checkpoint = tmp_path / "run" / "supernet.pt"
    checkpoint.parent.mkdir()
    data = DataSpec(name="digits", holdout=100).to_dict()
    save_supernet(checkpoint, supernet, data=data, train_config={"bn_images": 64})
    settings = LatencyStudySettings(
        spaces=("tiny_convnet",),
        image_size=8,
        runtimes=("onnxruntime",),
        threads=1,
        holdout=3,
        repeats=1,
        search_batch=4,
        search=FrontSearch(population=6, generations=2, verify=2),
    )
    out = tmp_path / "study"
    study = run_latency_study(out, settings, supernet=checkpoint, log=lambda _: None)
    assert [(row.space, row.runtime) for row in study.proxies] == [("tiny_convnet", "onnxruntime")]
    assert study.proxies[0].value("n") == 3
    assert [front.name for front in study.fronts] == ["bitops", "latency-onnxruntime"]
    for front in study.fronts:
        assert len(front.accuracy) == len(front.configs) == len(front.latency["onnxruntime"])
        assert np.all(front.latency["onnxruntime"] > 0)
        assert front.hypervolume["onnxruntime"] >= 0
    assert study.fronts[0].speedup["onnxruntime"] == (1.0, 1.0, 1.0)  # against itself
    text = (out / "latency.md").read_text()
    assert "ρ latency table" in text and "searched against onnxruntime latency" in text
    assert (out / "latency.png").stat().st_size > 0
    result = json.loads((out / "latency.json").read_text())
    assert len(result["fronts"]) == 2 and result["proxies"][0]["validation"]["n"] == 3
    # a second run reuses the tables measured with the same key
    logged: list[str] = []
    run_latency_study(out, settings, log=logged.append)
    assert any(line.startswith("reused") for line in logged)
