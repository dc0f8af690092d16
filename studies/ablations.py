"""EQ-Net's ablations at small scale: WDR, GPG, per-tensor steps, static QAT, schedules."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

from eqsearch.app.commands.common import non_negative_int, positive_int, seed_int
from eqsearch.errors import InputError

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from eqsearch.app.commands.common import add_force_argument, add_progress_argument, progress_printer
from eqsearch.files import atomic_save_figure, atomic_write_text, check_outputs
from eqsearch.locks import hold_directory
from eqsearch.space import Granularity, QuantForm
from studies.entry import study_main
from studies.fp_init import shared_fp_checkpoint
from studies.report import frame_table
from supernet.data.datasets import DataBundle, build_data
from supernet.evaluation.evaluate import PAPER_FORMS, evaluate_configs, evaluation_set
from supernet.evaluation.oracle import measure_accuracy
from supernet.files.checkpoint import load_checkpoint, load_supernet
from supernet.networks.elastic import Supernet
from supernet.quantizers.lsq import LsqQuantizer
from supernet.training.losses import standardized_moments
from supernet.training.train import CHECKPOINT_NAME, EpochReport, TrainConfig, train_supernet

PARTS = ("wdr", "guidance", "per_tensor", "static", "schedule")
"""The ablations: WDR terms (Table 3, Fig. 2), GPG vs label guidance (Fig. 3), per-tensor
step sizes learned vs derived from per-channel ones (Table 4), the supernet vs static
single-config QAT, joint (EQ-Net) vs progressive (OQAT) schedules."""

DERIVATIONS = ("min", "mean", "max")
CURVE_FORM = QuantForm("channel", True, True)
REPORT_NAME = "report.md"
OUTPUTS = {
    REPORT_NAME: "report",
    "tables.json": "json",
    "wdr_histograms.png": "image",
    "guidance_curves.png": "image",
}
"""The report files of the study (name → kind, see ``eqsearch.files.KINDS``); the trained
variants in ``runs/`` are continued by a rerun, not replaced."""


@dataclass(frozen=True)
class AblationConfig:
    """What the ablation study trains and measures.

    Args:
        base: the supernet setting every variant starts from (the EQ-Net default: GPG with
            WDR, joint schedule). Its FP pretraining runs once and is shared by all variants.
        bits: the uniform W=A bit widths the tables report (the paper: 2, 4 and 8).
        parts: which ablations to run (see :data:`PARTS`).
        histogram_layer: the layer whose weights Fig. 2 shows (default: the elastic layer
            with the most parameters).
    """

    base: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            model="lenet5", dataset="mnist5k", fp_epochs=10, epochs=15, seed=0
        )
    )
    bits: tuple[int, ...] = (2, 4, 8)
    parts: tuple[str, ...] = PARTS
    histogram_layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", tuple(self.bits))
        object.__setattr__(self, "parts", tuple(self.parts))
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise InputError(f"parts must be a non-empty subset of {PARTS}; got {self.parts!r}")
        space = self.base.space
        missing = [b for b in self.bits if b not in space.w_bits or b not in space.a_bits]
        if not self.bits or missing:
            raise InputError(
                f"bits must be weight and activation bit widths of the base space "
                f"{space.w_bits}; got {self.bits!r}"
            )


def _variants(config: AblationConfig) -> dict[str, TrainConfig]:
    """Every training run the chosen parts need, by name (shared runs appear once)."""
    base = config.base
    runs: dict[str, TrainConfig] = {"eqnet": base}
    if "wdr" in config.parts:
        runs["wdr_none"] = replace(base, wdr_skew_weight=0.0, wdr_kurtosis_weight=0.0)
        runs["wdr_kurtosis"] = replace(base, wdr_skew_weight=0.0)
        runs["wdr_skewness"] = replace(base, wdr_kurtosis_weight=0.0)
    if "guidance" in config.parts:
        runs["guidance_hard"] = replace(base, guidance="hard")
        runs["guidance_smooth"] = replace(base, guidance="smooth")
    if "static" in config.parts:
        for bits in config.bits:
            # A space of one config, trained with cross-entropy only: plain LSQ+ QAT.
            runs[f"static_W{bits}A{bits}"] = replace(
                base,
                w_bits=(bits,),
                a_bits=(bits,),
                granularities=("channel",),
                w_symmetries=(True,),
                a_symmetries=(True,),
                random_subnets=0,
                guidance="hard",
                wdr_skew_weight=0.0,
                wdr_kurtosis_weight=0.0,
            )
    if "schedule" in config.parts:
        runs["progressive"] = replace(base, schedule="progressive")
    return runs


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


def _cell(frame: pd.DataFrame, row: str, column: str) -> float:
    value: Any = frame.at[row, column]
    return float(value)


def _summary_row(frame: pd.DataFrame, bits: Sequence[int]) -> dict[str, float]:
    row = {f"W{b}A{b}": _cell(frame, f"W{b}A{b}", "mean") for b in bits}
    row["average"] = float(np.mean(list(row.values())))
    return row


# -- figures -------------------------------------------------------------------------------


def _largest_layer(supernet: Supernet) -> str:
    candidates = [
        (spec.n_params, spec.name) for spec in supernet.space.layers if spec.pinned is None
    ]
    return max(candidates)[1]


def plot_weight_histograms(
    panels: Sequence[tuple[str, torch.Tensor]], layer: str, path: Path
) -> Path:
    """EQ-Net Fig. 2: histograms of one layer's weights, each titled with skewness/kurtosis."""
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for axis, (title, weight) in zip(np.atleast_1d(axes), panels, strict=True):
        skew, kurtosis = standardized_moments(weight.detach())
        values = weight.detach().flatten().cpu().numpy()
        axis.hist(values, bins=80, color="#3b6ea8")
        axis.set_title(f"{title}\nskew {float(skew):+.2f}, kurtosis {float(kurtosis):.2f}")
        axis.set_xlabel(f"{layer} weight")
    figure.tight_layout()
    atomic_save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path


def plot_guidance_curves(runs: Sequence[TrainedRun], bits: Sequence[int], path: Path) -> Path:
    """EQ-Net Fig. 3: holdout accuracy per epoch at the lowest and highest bits and averaged."""
    low, high = min(bits), max(bits)
    titles = [f"W{low}A{low}", f"W{high}A{high}", "average " + "-".join(map(str, bits))]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for run in runs:
        epochs = [entry["epoch"] for entry in run.history if f"probe_W{low}A{low}" in entry]
        entries = [entry for entry in run.history if f"probe_W{low}A{low}" in entry]
        series = [
            [entry[f"probe_W{low}A{low}"] for entry in entries],
            [entry[f"probe_W{high}A{high}"] for entry in entries],
            [np.mean([entry[f"probe_W{b}A{b}"] for b in bits]) for entry in entries],
        ]
        for axis, values in zip(axes, series, strict=True):
            axis.plot(epochs, values, marker="o", markersize=3, label=run.name)
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_ylabel("holdout top-1 %")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    atomic_save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path


# -- the study -----------------------------------------------------------------------------


@dataclass
class AblationReport:
    """Tables (DataFrames by name), figure paths and the markdown report of a study."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Path]
    markdown: str
    path: Path
    images: int = 0
    """The test images every accuracy was measured on."""


def run_ablations(
    config: AblationConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> AblationReport:
    """Train every variant the chosen parts need (sharing one FP pretraining), measure them
    on the test split, and write ``report.md``, ``tables.json`` and the PNG figures.

    Variants already trained in ``out_dir/runs/`` by an earlier call with the same settings
    are reused, so a rerun only regenerates the report. A file of another kind at a report's
    name is refused before any work.
    """
    out = check_outputs(out_dir, OUTPUTS, force=True)
    base = config.base
    fp_path = shared_fp_checkpoint(base, out)
    variants = _variants(config)
    if fp_path is not None:
        variants = {
            name: replace(variant, init=str(fp_path), fp_epochs=0)
            for name, variant in variants.items()
        }
    data = build_data(base.data_spec(), seed=base.seed)
    bn_images = base.bn_images
    runs: dict[str, TrainedRun] = {}
    for name, variant in variants.items():
        if progress is not None:
            progress(f"training {name}")
        runs[name] = train_variant(name, variant, out / "runs" / name, config.bits)
    if progress is not None:
        progress("measuring")
    accuracy = {
        name: uniform_accuracies(run, data, config.bits, bn_images=bn_images)
        for name, run in runs.items()
    }
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Path] = {}
    eqnet = runs["eqnet"]
    tables["uniform_eqnet"] = accuracy["eqnet"]

    if "wdr" in config.parts:
        rows = {}
        for label, name in (
            ("none", "wdr_none"),
            ("kurtosis only", "wdr_kurtosis"),
            ("skewness only", "wdr_skewness"),
            ("both (EQ-Net)", "eqnet"),
        ):
            row = _summary_row(accuracy[name], config.bits)
            row["mean |skew|"], row["mean kurtosis"] = weight_moments(runs[name].supernet)
            rows[label] = row
        tables["wdr"] = pd.DataFrame.from_dict(rows, orient="index")
        layer = config.histogram_layer or _largest_layer(eqnet.supernet)
        layers = eqnet.supernet.elastic_layers()
        if layer not in layers:
            raise InputError(f"histogram_layer must be one of {sorted(layers)}; got {layer!r}")
        panels = []
        if fp_path is not None:
            fp_model, _ = load_supernet(fp_path)
            panels.append(("full precision (start)", fp_model.elastic_layers()[layer].weight))
        panels.append(
            ("supernet without WDR", runs["wdr_none"].supernet.elastic_layers()[layer].weight)
        )
        panels.append(("supernet with WDR", layers[layer].weight))
        figures["wdr_histograms"] = plot_weight_histograms(
            panels, layer, out / "wdr_histograms.png"
        )

    if "guidance" in config.parts:
        rows = {
            label: _summary_row(accuracy[name], config.bits)
            for label, name in (
                ("GPG (EQ-Net)", "eqnet"),
                ("hard labels", "guidance_hard"),
                ("label smoothing", "guidance_smooth"),
            )
        }
        tables["guidance"] = pd.DataFrame.from_dict(rows, orient="index")
        curve_runs = [
            replace_name(eqnet, "GPG"),
            replace_name(runs["guidance_hard"], "hard labels"),
            replace_name(runs["guidance_smooth"], "label smoothing"),
        ]
        figures["guidance_curves"] = plot_guidance_curves(
            curve_runs, config.bits, out / "guidance_curves.png"
        )

    if "per_tensor" in config.parts:
        tables["per_tensor"] = per_tensor_table(eqnet, data, config.bits, bn_images=bn_images)

    if "static" in config.parts:
        rows = {}
        for value in config.bits:
            key = f"W{value}A{value}"
            column = str(CURVE_FORM)
            supernet_accuracy = _cell(accuracy["eqnet"], key, column)
            static_accuracy = _cell(accuracy[f"static_W{value}A{value}"], key, column)
            rows[key] = {
                "supernet": supernet_accuracy,
                "static QAT": static_accuracy,
                "supernet − static": supernet_accuracy - static_accuracy,
            }
        tables["static"] = pd.DataFrame.from_dict(rows, orient="index")

    if "schedule" in config.parts:
        rows = {}
        for label, name in (("joint (EQ-Net)", "eqnet"), ("progressive (OQAT)", "progressive")):
            rows[label] = _summary_row(accuracy[name], config.bits)
        tables["schedule"] = pd.DataFrame.from_dict(rows, orient="index")

    markdown = format_report(config, tables, figures)
    path = out / REPORT_NAME
    atomic_write_text(path, markdown)
    atomic_write_text(
        out / "tables.json",
        json.dumps(
            {name: frame.to_dict(orient="index") for name, frame in tables.items()}, indent=2
        ),
    )
    images = len(evaluation_set(data, split="test", bn_images=bn_images).labels)
    return AblationReport(tables, figures, markdown, path, images)


def replace_name(run: TrainedRun, name: str) -> TrainedRun:
    """The same run under another label (for legends)."""
    return TrainedRun(name, run.config, run.supernet, run.history)


_CAPTIONS = {
    "uniform_eqnet": "EQ-Net supernet (GPG + WDR, joint): test top-1 % of uniform subnets per form",
    "wdr": "WDR (EQ-Net Table 3): test top-1 % averaged over the four forms; weight moments "
    "of the quantized layers after training",
    "guidance": "Guidance (EQ-Net Fig. 3): test top-1 % averaged over the four forms",
    "per_tensor": "Per-tensor symmetric weights (EQ-Net Table 4): learned step sizes vs "
    "step sizes derived from the learned per-channel ones",
    "static": "Supernet vs static single-config LSQ+ QAT (same epochs, channel-sym-sym)",
    "schedule": "Joint (EQ-Net) vs progressive bit inheritance (OQAT)",
}


def format_report(
    config: AblationConfig, tables: dict[str, pd.DataFrame], figures: dict[str, Path]
) -> str:
    """The markdown report: the setting, every table with its caption, the figures."""
    base = config.base
    lines = [
        "# EQ-Net ablations",
        "",
        f"{base.model} on {base.dataset}, {base.fp_epochs} FP epochs shared by every variant, "
        f"then {base.epochs} supernet epochs each; seed {base.seed}; bits "
        f"{', '.join(map(str, config.bits))}.",
        "",
    ]
    for name, frame in tables.items():
        lines += [f"## {_CAPTIONS[name]}", "", frame_table(frame), ""]
    for name, path in figures.items():
        lines += [f"![{name}]({path.name})", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``eqsearch study ablations``."""
    parser.add_argument("--out", required=True, help="study directory (runs/, report.md, PNGs)")
    parser.add_argument(
        "--config", help="a base TrainConfig, JSON or YAML (default: lenet5 on mnist5k)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--bits", default="2,4,8", help="uniform bit widths of the tables")
    parser.add_argument("--epochs", type=positive_int, help="supernet epochs per variant")
    parser.add_argument("--fp-epochs", type=non_negative_int, help="shared FP pretraining epochs")
    parser.add_argument("--seed", type=seed_int, help="seeds every variant (default: the base's)")
    parser.add_argument("--device", help="auto, cpu, cuda")
    add_force_argument(parser, "report.md, tables.json and the figures")
    add_progress_argument(parser)


def config_from_args(args: argparse.Namespace) -> AblationConfig:
    """An :class:`AblationConfig` from parsed options (ValueError on bad values)."""
    base = TrainConfig.from_file(args.config) if args.config else AblationConfig().base
    overrides = {
        name: getattr(args, name)
        for name in ("epochs", "fp_epochs", "seed", "device")
        if getattr(args, name) is not None
    }
    try:
        bits = tuple(int(b) for b in args.bits.split(","))
    except ValueError:
        raise InputError(f"--bits must be bit widths like 2,4,8; got {args.bits!r}") from None
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    return AblationConfig(base=replace(base, **overrides), bits=bits, parts=parts)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed options and print where the report is."""
    config = config_from_args(args)
    check_outputs(args.out, OUTPUTS, force=args.force)
    with hold_directory(args.out, what="the study directory"):
        report = run_ablations(config, args.out, progress=progress_printer(not args.no_progress))
    print(report.markdown)
    print(f"report: {report.path}")
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python -m studies.ablations``: ``eqsearch study ablations``."""
    raise SystemExit(study_main("ablations", argv))


if __name__ == "__main__":
    main()
