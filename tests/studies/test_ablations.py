"""The ablation study: variants, per-tensor step derivation, the report, reproducibility."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from eqsearch.space import Granularity, QuantForm
from studies.ablation_runs import TrainedRun, derived_tensor_step, per_tensor_table
from studies.ablations import AblationConfig, _variants, run_ablations
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.evaluation.oracle import subnet_accuracy
from supernet.networks.build import build_supernet
from supernet.networks.quant_init import init_quantizers
from supernet.training.config import TrainConfig

TINY = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    fp_epochs=1,
    epochs=1,
    holdout=100,
    bn_images=100,
    quant_init_images=64,
    batch_size=64,
)


@pytest.fixture(scope="module")
def tiny_run() -> tuple[TrainedRun, object]:
    data = build_data(DataSpec("digits", holdout=100), seed=0)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        w_bits=(2, 4, 8),
        a_bits=(2, 4, 8),
    )
    init_quantizers(supernet, data.calibration_images(64))
    supernet.eval()
    return TrainedRun("tiny", TINY, supernet, []), data


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="parts"):
        AblationConfig(base=TINY, parts=("wdr", "dropout"))
    with pytest.raises(ValueError, match="bits"):
        AblationConfig(base=TINY, bits=(2, 3))  # 3 is not in TINY's space


def test_variants_change_only_what_each_ablation_names() -> None:
    runs = _variants(AblationConfig(base=TINY, bits=(2, 8)))
    assert runs["eqnet"] == TINY
    assert (runs["wdr_none"].wdr_skew_weight, runs["wdr_none"].wdr_kurtosis_weight) == (0, 0)
    assert runs["wdr_kurtosis"].wdr_skew_weight == 0
    assert runs["wdr_kurtosis"].wdr_kurtosis_weight == TINY.wdr_kurtosis_weight
    assert runs["wdr_skewness"].wdr_kurtosis_weight == 0
    assert runs["wdr_skewness"].wdr_skew_weight == TINY.wdr_skew_weight
    assert runs["guidance_hard"] == replace(TINY, guidance="hard")
    assert runs["progressive"] == replace(TINY, schedule="progressive")
    static = runs["static_W2A2"]
    assert (static.w_bits, static.a_bits, static.random_subnets) == ((2,), (2,), 0)
    assert (static.wdr_skew_weight, static.wdr_kurtosis_weight) == (0, 0)
    assert set(runs) == {
        "eqnet",
        "wdr_none",
        "wdr_kurtosis",
        "wdr_skewness",
        "guidance_hard",
        "guidance_smooth",
        "static_W2A2",
        "static_W8A8",
        "progressive",
    }
    only = _variants(AblationConfig(base=TINY, parts=("per_tensor",)))
    assert set(only) == {"eqnet"}


def test_derived_tensor_steps_are_min_mean_max_of_the_channel_steps(tiny_run) -> None:
    run, _ = tiny_run
    quantizer = next(
        layer.quantizer
        for layer, spec in zip(
            run.supernet.elastic_layers().values(), run.supernet.space.layers, strict=True
        )
        if spec.pinned is None
    )
    channel = quantizer.weight_step(4, Granularity.CHANNEL, True).flatten()
    assert channel.numel() > 1 and channel.min() < channel.max()
    assert torch.allclose(derived_tensor_step(quantizer, 4, "min"), channel.min())
    assert torch.allclose(derived_tensor_step(quantizer, 4, "mean"), channel.mean())
    assert torch.allclose(derived_tensor_step(quantizer, 4, "max"), channel.max())
    with pytest.raises(ValueError, match="how"):
        derived_tensor_step(quantizer, 4, "median")


def test_per_tensor_table_restores_the_learned_steps(tiny_run) -> None:
    run, data = tiny_run
    supernet = run.supernet
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    table = per_tensor_table(run, data, (2, 8), bn_images=100)
    assert list(table.index) == [
        "learned",
        "per-channel min",
        "per-channel mean",
        "per-channel max",
    ]
    assert list(table.columns) == ["W2A2", "W8A8"]
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    images, labels = data.test_tensors()
    config = supernet.space.uniform(2, 2, QuantForm.parse("tensor-sym-sym"))
    expected = subnet_accuracy(supernet, config, images, labels, data.calibration_images(100))
    assert table.loc["learned", "W2A2"] == pytest.approx(expected)
    # a min-derived 2-bit step clips far less of the weights than the learned one: the
    # derived row is a different quantizer, not a copy of the learned one
    assert not table.loc["per-channel min"].equals(table.loc["learned"])


@pytest.mark.slow
def test_study_report_rerun_and_reproducibility(tmp_path: Path) -> None:
    config = AblationConfig(base=TINY, bits=(2, 8))
    report = run_ablations(config, tmp_path / "a")
    assert set(report.tables) == {
        "uniform_eqnet",
        "wdr",
        "guidance",
        "per_tensor",
        "static",
        "schedule",
    }
    wdr = report.tables["wdr"]
    assert list(wdr.index) == ["none", "kurtosis only", "skewness only", "both (EQ-Net)"]
    assert ((wdr[["W2A2", "W8A8"]] >= 0) & (wdr[["W2A2", "W8A8"]] <= 100)).all().all()
    assert wdr.loc["none", "mean |skew|"] > wdr.loc["skewness only", "mean |skew|"]
    static = report.tables["static"]
    assert static["supernet − static"].tolist() == pytest.approx(
        (static["supernet"] - static["static QAT"]).tolist()
    )
    for path in report.figures.values():
        assert path.is_file() and path.stat().st_size > 10_000
    text = report.path.read_text()
    assert "| both (EQ-Net) |" in text and "guidance_curves.png" in text
    stored = json.loads((tmp_path / "a" / "tables.json").read_text())
    assert stored["wdr"]["none"]["W2A2"] == pytest.approx(wdr.loc["none", "W2A2"])

    # a rerun reuses the trained variants (no retraining) and reproduces every number
    checkpoint = tmp_path / "a" / "runs" / "eqnet" / "supernet.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = run_ablations(config, tmp_path / "a")
    assert checkpoint.stat().st_mtime_ns == stamp
    assert again.markdown == report.markdown

    # the same seed in a fresh directory retrains to the same numbers
    fresh = run_ablations(replace(config, parts=("static",)), tmp_path / "b")
    assert fresh.tables["static"].equals(report.tables["static"])
