"""The ablations' trained variants and what is measured on them: uniform-bit test accuracy,
weight moments, per-tensor steps learned vs derived from per-channel ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from eqsearch.errors import InputError
from eqsearch.space import Granularity, QuantForm
from supernet.data.bundle import DataBundle
from supernet.evaluation.evaluate import PAPER_FORMS, evaluate_configs, evaluation_set
from supernet.evaluation.oracle import measure_accuracy
from supernet.files.checkpoint import load_checkpoint, load_supernet
from supernet.networks.elastic import Supernet
from supernet.quantizers.lsq import LsqQuantizer
from supernet.training.config import TrainConfig
from supernet.training.loop import EpochReport, train_supernet
from supernet.training.losses import standardized_moments
from supernet.training.run_files import CHECKPOINT_NAME

DERIVATIONS = ("min", "mean", "max")
"""How a per-tensor step is derived from the per-channel ones."""
CURVE_FORM = QuantForm("channel", True, True)
"""The form of the training curves and of the supernet-vs-static comparison."""


@dataclass
class TrainedRun:
    """A finished variant: its supernet and per-epoch history."""

    name: str
    config: TrainConfig
    supernet: Supernet
    history: list[dict[str, Any]]


def _probe_recorder(bits: Sequence[int], bn_images: int) -> Callable[[EpochReport], None]:
    """Adds the holdout accuracy of uniform subnets at ``bits`` to every epoch's log entry."""

    def record(report: EpochReport) -> None:
        space = report.supernet.space
        form = CURVE_FORM if CURVE_FORM in space.forms else space.forms[0]
        scoring = report.data.holdout
        calibration = report.data.calibration_source(bn_images)
        for value in bits:
            if value in space.w_bits and value in space.a_bits:
                report.entry[f"probe_W{value}A{value}"] = measure_accuracy(
                    report.supernet, space.uniform(value, value, form), scoring, calibration
                )

    return record


def train_variant(
    name: str, config: TrainConfig, run_dir: Path, bits: Sequence[int], *, progress: bool = False
) -> TrainedRun:
    """Train one variant into ``run_dir``, or reuse (or resume) what a previous call left there.

    Reruns of the study are cheap and an interrupted study continues where it stopped.
    """
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if checkpoint_path.exists():
        stored = load_checkpoint(checkpoint_path)
        same = TrainConfig.from_dict(stored.get("train_config") or {}) == config
        if not same:
            raise InputError(
                f"{checkpoint_path} holds a different setting of {name}; remove {run_dir} "
                "or choose another --out"
            )
        if int(stored.get("epoch", 0)) >= config.epochs:
            supernet, stored = load_supernet(checkpoint_path)
            supernet.eval()
            return TrainedRun(name, config, supernet, list(stored.get("history", [])))
    result = train_supernet(
        config,
        run_dir,
        resume=checkpoint_path.exists(),
        progress=progress,
        on_epoch=_probe_recorder(bits, config.bn_images),
    )
    return TrainedRun(name, config, result.supernet, result.history)


# -- measurements --------------------------------------------------------------------------


def uniform_accuracies(
    run: TrainedRun, data: DataBundle, bits: Sequence[int], *, bn_images: int
) -> pd.DataFrame:
    """Test accuracy of uniform W=A subnets: rows ``W{b}A{b}``, columns the paper's forms that
    the run's space has, plus ``mean`` over those forms."""
    space = run.supernet.space
    forms = [f for f in PAPER_FORMS if f in space.forms] or [space.forms[0]]
    evaluation = evaluation_set(data, split="test", bn_images=bn_images)
    rows: dict[str, dict[str, float]] = {}
    for value in bits:
        if value not in space.w_bits or value not in space.a_bits:
            continue
        frame = evaluate_configs(
            run.supernet, evaluation, [space.uniform(value, value, f) for f in forms]
        )
        row = {str(f): float(a) for f, a in zip(forms, frame["accuracy"], strict=True)}
        row["mean"] = float(np.mean(list(row.values())))
        rows[f"W{value}A{value}"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def weight_moments(supernet: Supernet) -> tuple[float, float]:
    """Mean |skewness| and mean kurtosis of the latent weights over the quantized layers."""
    skews, kurtoses = [], []
    with torch.no_grad():
        for layer, spec in zip(
            supernet.elastic_layers().values(), supernet.space.layers, strict=True
        ):
            if spec.pinned == (32, 32):
                continue
            skew, kurtosis = standardized_moments(layer.weight)
            skews.append(abs(float(skew)))
            kurtoses.append(float(kurtosis))
    return float(np.mean(skews)), float(np.mean(kurtoses))


def derived_tensor_step(quantizer: LsqQuantizer, bits: int, how: str) -> torch.Tensor:
    """A per-tensor symmetric step size derived from the learned per-channel ones.

    Args:
        how: ``min``, ``mean`` or ``max`` over the per-channel steps (EQ-Net's Table 4).
    """
    if how not in DERIVATIONS:
        raise InputError(f"how must be one of {DERIVATIONS}; got {how!r}")
    channel_steps = quantizer.weight_step(bits, Granularity.CHANNEL, True)
    return getattr(torch, how)(channel_steps).reshape(())


def per_tensor_table(
    run: TrainedRun, data: DataBundle, bits: Sequence[int], *, bn_images: int
) -> pd.DataFrame:
    """Test accuracy of the per-tensor symmetric form with learned step sizes and with step
    sizes derived from the per-channel ones (rows), at each uniform bit width (columns)."""
    supernet = run.supernet
    form = QuantForm("tensor", True, True)
    if form not in supernet.space.forms or QuantForm("channel", True, True) not in (
        supernet.space.forms
    ):
        raise InputError("the per-tensor ablation needs channel-sym and tensor-sym forms")
    quantizers: list[LsqQuantizer] = []
    for layer, spec in zip(supernet.elastic_layers().values(), supernet.space.layers, strict=True):
        if spec.pinned is not None:
            continue
        if not isinstance(layer.quantizer, LsqQuantizer):
            raise InputError("the per-tensor ablation needs the lsq quantizer")
        quantizers.append(layer.quantizer)
    evaluation = evaluation_set(data, split="test", bn_images=bn_images)
    scoring, calibration = evaluation.scoring, evaluation.calibration
    table: dict[str, dict[str, float]] = {"learned": {}}
    for value in bits:
        config = supernet.space.uniform(value, value, form)
        column = f"W{value}A{value}"
        table["learned"][column] = measure_accuracy(supernet, config, scoring, calibration)
        for how in DERIVATIONS:
            learned = [q.weight_step(value, Granularity.TENSOR, True).clone() for q in quantizers]
            try:
                for quantizer in quantizers:
                    quantizer.set_weight_step(
                        value, Granularity.TENSOR, True, derived_tensor_step(quantizer, value, how)
                    )
                accuracy = measure_accuracy(supernet, config, scoring, calibration)
            finally:
                for quantizer, step in zip(quantizers, learned, strict=True):
                    quantizer.set_weight_step(value, Granularity.TENSOR, True, step)
            table.setdefault(f"per-channel {how}", {})[column] = accuracy
    return pd.DataFrame.from_dict(table, orient="index")


def cell(frame: pd.DataFrame, row: str, column: str) -> float:
    """One entry of an accuracy table as a float."""
    value: Any = frame.at[row, column]
    return float(value)


def summary_row(frame: pd.DataFrame, bits: Sequence[int]) -> dict[str, float]:
    """Mean accuracy over the forms at each bit width, and their average."""
    row = {f"W{b}A{b}": cell(frame, f"W{b}A{b}", "mean") for b in bits}
    row["average"] = float(np.mean(list(row.values())))
    return row


def replace_name(run: TrainedRun, name: str) -> TrainedRun:
    """The same run under another label (for legends)."""
    return TrainedRun(name, run.config, run.supernet, run.history)
