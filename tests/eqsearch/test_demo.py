"""`eqsearch demo --quick`: every stage runs and every file lands in the demo directory."""

from __future__ import annotations

import json

import pytest

from eqsearch.app.cli import main
from eqsearch.app.demo_settings import DemoSettings


def test_demo_settings_validation() -> None:
    with pytest.raises(ValueError, match=r"DemoSettings\.samples must be >= 10"):
        DemoSettings(samples=5)
    with pytest.raises(ValueError, match=r"DemoSettings\.epochs must be a positive integer"):
        DemoSettings(epochs=0)
    assert DemoSettings.quick().generations == 4


@pytest.mark.slow
def test_quick_demo_writes_every_file(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NSGA-II searches" in printed and "measured_accuracy" in printed
    run = {p.name for p in (out / "run").iterdir()}
    assert {"fp.pt", "supernet.pt", "samples.csv", "predictor-mlp.pt"} <= run
    assert "predictor-xgboost.json" in run
    for engine in ("pymoo", "deap"):
        files = sorted(p.name for p in (out / engine).iterdir())
        assert files == ["pareto.csv", "pareto.json", "pareto.png"]
        data = json.loads((out / engine / "pareto.json").read_text())
        assert sum("measured_accuracy" in entry for entry in data["configs"]) == min(
            3, len(data["configs"])
        )
        assert all(entry["w_bits"] <= 3.0 for entry in data["configs"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["searches"]) == {"pymoo", "deap"}
    assert set(summary["predictors"]) == {"mlp", "xgboost"}
    assert (out / "summary.md").read_text().startswith("# eqsearch demo")
    assert sorted(p.name for p in (out / "export").iterdir()) == ["model.onnx", "weights.npz"]
    export = summary["export"]
    assert 0.0 <= export["top1_agreement"] <= 100.0 and export["images"] > 0
    assert export["packed_bytes"] < export["fp32_bytes"]
    assert export["onnx_bytes"] == (out / "export" / "model.onnx").stat().st_size


def test_joint_demo_settings() -> None:
    with pytest.raises(ValueError, match=r"DemoSettings\.model must be one of lenet5, oqa_mbv3"):
        DemoSettings(model="resnet18")
    with pytest.raises(ValueError, match=r"DemoSettings\.bitops must be positive"):
        DemoSettings(bitops=0.0)
    joint = DemoSettings.joint()
    assert joint.model == "oqa_mbv3_tiny" and joint.bitops == 1.5e6
    assert DemoSettings.joint(quick=True).backends == ("xgboost",)


@pytest.mark.slow
def test_quick_joint_demo_searches_architectures_under_the_bitops_budget(tmp_path) -> None:
    from eqsearch.space import ElasticSpace, SubnetConfig
    from supernet.files.checkpoint import load_checkpoint

    out = tmp_path / "demo"
    assert main(["demo", "--model", "oqa_mbv3_tiny", "--quick", "--out", str(out)]) == 0
    space = ElasticSpace.from_dict(load_checkpoint(out / "run" / "supernet.pt")["space"])
    assert space.is_joint
    data = json.loads((out / "pymoo" / "pareto.json").read_text())
    configs = [space.validate(SubnetConfig.from_dict(e["config"])) for e in data["configs"]]
    assert all(entry["bitops"] <= 1.5e6 for entry in data["configs"])
    assert all(config.arch for config in configs)
    assert json.loads((out / "summary.json").read_text())["export"]["top1_agreement"] >= 99.5
