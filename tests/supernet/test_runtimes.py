"""Runtime probes and latency tables measured on tiny networks (a few layers, few repeats)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.latency import LatencyTable
from eqsearch.latency.kernels import KernelTable, save_probe
from eqsearch.latency.settings import LatencySettings
from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.deployment.runtimes import get_runtime, runtime_available
from supernet.deployment.runtimes.latency_build import build_latency_table
from supernet.deployment.runtimes.probe import ProbeSettings, run_probe
from supernet.files.checkpoint import save_supernet
from supernet.networks.elastic import Supernet

SYM = QuantForm.parse("channel-sym-sym")
ASYM = QuantForm.parse("channel-asym-sym")
TINY_PROBE = ProbeSettings(
    w_bits=(4, 8), a_bits=(4, 8), forms=(SYM, ASYM), channels=16, image_size=8, repeats=1
)


@cache
def _probe(runtime: str) -> KernelTable:
    return run_probe(get_runtime(runtime), TINY_PROBE)


def test_onnx_runtime_probe_finds_integer_kernels_and_int4_fallbacks() -> None:
    probe = _probe("onnxruntime")
    assert probe.key.runtime == "onnxruntime" and probe.key.threads == 2
    for form in (SYM, ASYM):
        for role in ("dense", "depthwise", "pointwise", "se.reduce", "linear"):
            for w_bits, a_bits in ((4, 8), (8, 4), (8, 8)):
                cell = probe.cell(role, form, w_bits, a_bits)
                assert cell is not None and cell.integer, (role, form, w_bits, a_bits)
                assert cell.kernel in ("QLinearConv", "QGemm")
                assert cell.layer_us > 0 and cell.fp32_us > 0
        # a conv whose output an h-sigmoid reads, and the classifier (float logits), cannot
        # end in a QuantizeLinear: ONNX Runtime runs them in float
        assert not probe.integer("se.expand", form, 8, 8)
        assert not probe.integer("classifier", form, 8, 8)
        # INT4 storage: DequantizeLinear + float conv, the same integers
        int4 = probe.cell("dense", form, 4, 8, "int4")
        assert int4 is not None and not int4.integer and int4.kernel == "Conv"
    assert set(probe.integer_forms()) == {SYM, ASYM}
    rows = {(row["role"], row["form"], row["storage"]): row for row in probe.summary()}
    assert rows[("dense", str(SYM), "int8")]["integer"] == "4/8 8/4 8/8"
    assert rows[("dense", str(SYM), "int4")]["float"] == "4/8"
    assert KernelTable.from_dict(json.loads(json.dumps(probe.to_dict()))) == probe


@pytest.mark.skipif(not runtime_available("openvino"), reason="openvino is not installed")
def test_openvino_probe_runs_asymmetric_weights_in_float() -> None:
    """The same exported graphs: OpenVINO's CPU plugin runs symmetric int8 weights as integer
    kernels, the classifier included, and falls back to float for asymmetric weights."""
    probe = _probe("openvino")
    assert probe.integer("dense", SYM, 4, 8) and probe.integer("classifier", SYM, 8, 8)
    assert probe.cell("dense", SYM, 4, 8).kernel.endswith("_I8")  # type: ignore[union-attr]
    assert not probe.integer("dense", ASYM, 4, 8)
    assert not probe.integer("dense", SYM, 4, 8, "int4")
    assert probe.integer_forms() == (SYM,)


@cache
def _tiny_supernet() -> Supernet:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=10,
        in_channels=1,
        image_size=8,
        w_bits=(4, 8),
        a_bits=(4, 8),
        granularities=("channel",),
        w_symmetries=(True, False),
        a_symmetries=(True,),
    )
    init_quantizers(supernet, torch.randn(32, 1, 8, 8))
    return supernet.eval()


@cache
def _tiny_table() -> LatencyTable:
    settings = LatencySettings(threads=1, repeats=2, holdout=4, calibration=3)
    return build_latency_table(
        _tiny_supernet(), get_runtime("onnxruntime"), _probe("onnxruntime"), settings
    )


def test_a_latency_table_is_measured_on_a_tiny_space() -> None:
    table = _tiny_table()
    space = _tiny_supernet().space
    assert [unit.name for unit in table.units] == [layer.name for layer in space.layers]
    assert table.key.threads == 1 and table.key.image_size == 8
    # the convs run integer kernels, the classifier (float logits) a float one; each in
    # two forms, with full or narrow (integer-clipped) activations
    assert sorted(table.classes) == sorted(
        f"{form}/{kernel}/{clip}"
        for form in (SYM, ASYM)
        for kernel in ("int", "float")
        for clip in ("full", "clip")
    )
    assert {unit.role for unit in table.units} == {"dense", "classifier"}
    integer = {index for index, label in enumerate(table.classes) if "/int/" in label}
    assert set(table.class_map["dense"].values()) == integer
    assert not set(table.class_map["classifier"].values()) & integer
    assert table.validation["designed"] >= 4 and table.validation["n"] == 4
    assert table.validation["calibration"] == 3
    rows = [row for row in table.designed if row["calibration"]]
    ratios = [row["measured_ms"] / row["layers_ms"] for row in rows]
    assert len(rows) == 3 and table.slope == pytest.approx(float(np.median(ratios)))
    assert len(table.holdout) == 4
    predicted = table.predict(space.batch(space.sample(5, 20, forms="per_layer")))
    assert np.all(np.isfinite(predicted)) and np.all(predicted > 0)
    for row in table.holdout:
        assert row["measured_ms"] > 0 and row["predicted_ms"] > 0


def test_latency_build_cli_reuses_its_table_and_refuses_another_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "run" / "supernet.pt"
    checkpoint.parent.mkdir()
    save_supernet(checkpoint, _tiny_supernet())
    probe = save_probe(_probe("onnxruntime"), tmp_path / "probe.json")
    table = checkpoint.parent / "latency-onnxruntime.json"
    args = ["latency", "build", "--supernet", str(checkpoint), "--probe", str(probe)]
    args += ["--threads", "1", "--repeats", "1", "--holdout", "2", "--calibration", "2"]
    args += ["--no-progress"]
    assert main(args) == 0
    built = LatencyTable.load(table)
    assert built.key.threads == 1 and built.validation["n"] == 2
    capsys.readouterr()
    assert main(args) == 0
    assert "reused" in capsys.readouterr().out
    assert main(["latency", "show", str(table)]) == 0
    shown = capsys.readouterr().out
    assert "held-out subnets" in shown and "Spearman ρ: BitOPs" in shown
    assert "kernel classes: channel-sym-sym/" in shown
    before = table.read_bytes()
    assert main([*args[:6], "--threads", "2", "--repeats", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "measured with another threads" in err and "--force" in err
    assert table.read_bytes() == before
    # a table of another CPU is refused the same way
    data = json.loads(before)
    data["key"]["cpu"] = "Another CPU"
    table.write_text(json.dumps(data))
    assert main(args) == 2
    assert "measured with another cpu" in capsys.readouterr().err


def test_search_with_a_latency_table_of_another_space_or_an_unmet_budget_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supernet.data.spec import DataSpec

    checkpoint = tmp_path / "run" / "supernet.pt"
    checkpoint.parent.mkdir()
    data = DataSpec(name="digits", holdout=100).to_dict()
    save_supernet(checkpoint, _tiny_supernet(), data=data, train_config={"bn_images": 64})
    table = _tiny_table()
    path = table.save(checkpoint.parent / "latency-onnxruntime.json")
    fastest = table.predict(_tiny_supernet().space.batch([_tiny_supernet().space.uniform(8, 8)]))[0]
    args = ["nsga", "--supernet", str(checkpoint), "--objectives", "bitops,latency"]
    args += ["--population", "8", "--generations", "2", "--no-progress"]
    assert main([*args, "--latency-ms", f"{fastest / 100:.6f}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no config meeting") and "none met --latency-ms" in err
    assert err.count("\n") == 1
    data = table.to_dict()
    data["space_fingerprint"] = "0" * 16
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert main([*args, "--latency-table", str(other)]) == 2
    err = capsys.readouterr().err
    assert "measured for another space" in err and err.count("\n") == 1
    assert not (checkpoint.parent / "pareto.json").exists()
    assert main([*args, "--verify", "2"]) == 0
    front = json.loads((checkpoint.parent / "pareto.json").read_text())
    for entry in front["configs"]:
        assert entry["latency"] == pytest.approx(entry["latency_ms"])
    # the verified configs were exported and timed on the table's runtime
    timed = [
        entry["measured_latency_ms"] for entry in front["configs"] if "measured_latency_ms" in entry
    ]
    assert len(timed) == 2 and all(value > 0 for value in timed)
    assert front["extra_columns"] == ["latency_ms", "measured_latency_ms"]
    assert path.exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["runtime", "probe", "--runtime", "tensorflow"],
        ["latency", "build", "--model", "tiny_convnet", "--runtime", "tvm", "--output", "t.json"],
    ],
)
def test_an_unknown_runtime_exits_2_with_one_line(
    arguments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runtime must be one of onnxruntime, openvino")
    assert err.count("\n") == 1


def test_export_cli_for_a_runtime_prints_its_kernels_and_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from supernet.data.spec import DataSpec

    monkeypatch.setenv("EQSEARCH_CACHE", str(tmp_path / "cache"))
    checkpoint = tmp_path / "supernet.pt"
    data = DataSpec(name="digits", holdout=100).to_dict()
    save_supernet(checkpoint, _tiny_supernet(), data=data, train_config={"bn_images": 64})
    out = tmp_path / "m.onnx"
    args = ["export", "--supernet", str(checkpoint), "--uniform", "4/4", "--output", str(out)]
    args += ["--runtime", "onnxruntime", "--threads", "1", "--min-agreement", "90"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "runtime" in text and "onnxruntime, 1 threads" in text
    # the first two convs (of three) feed quantized layers: integer kernels
    assert "layers run as integer kernels / float" in text and "2 / 2" in text
    assert "× FP32" in text and out.is_file()
    assert main([*args[:-6], "--runtime", "tvm", "--force"]) == 2
    assert "--runtime must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["pymoo", "deap"])
def test_a_measured_table_drives_both_engines(engine: str) -> None:
    from eqsearch.engines import nsga2
    from eqsearch.problem import SearchProblem, bitops_objective, latency_objective

    table = _tiny_table()
    space = _tiny_supernet().space
    problem = SearchProblem(space, [bitops_objective(), latency_objective(table)])
    front = nsga2(problem, engine=engine, population=8, generations=3, seed=0)
    np.testing.assert_allclose(front.column("latency"), table.predict(front.batch))
    every = space.batch(list(space.sample(0, 64, forms="per_layer")))
    # the table is measured, so its values vary from run to run: a searched front beats the
    # median random config, whatever the measurement
    assert front.column("latency").min() <= np.median(table.predict(every))
