"""EQ-Net's ablations at small scale: WDR, GPG, per-tensor steps, static QAT, schedules."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

from eqsearch.app.commands.common import non_negative_int, positive_int
from eqsearch.errors import InputError

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from eqsearch.app.commands.common import progress_printer
from eqsearch.files import atomic_save_figure, atomic_write_text, check_outputs
from studies.ablation_runs import (
    CURVE_FORM,
    TrainedRun,
    cell,
    per_tensor_table,
    replace_name,
    summary_row,
    train_variant,
    uniform_accuracies,
    weight_moments,
)
from studies.entry import add_run_arguments, run_in_directory, study_entry
from studies.fp_init import shared_fp_checkpoint
from studies.report import frame_table
from supernet.data.datasets import build_data
from supernet.evaluation.evaluate import evaluation_set
from supernet.files.checkpoint import load_supernet
from supernet.networks.elastic import Supernet
from supernet.training.config import TrainConfig
from supernet.training.losses import standardized_moments

PARTS = ("wdr", "guidance", "per_tensor", "static", "schedule")
"""The ablations: WDR terms (Table 3, Fig. 2), GPG vs label guidance (Fig. 3), per-tensor
step sizes learned vs derived from per-channel ones (Table 4), the supernet vs static
single-config QAT, joint (EQ-Net) vs progressive (OQAT) schedules."""

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
            row = summary_row(accuracy[name], config.bits)
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
            label: summary_row(accuracy[name], config.bits)
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
            supernet_accuracy = cell(accuracy["eqnet"], key, column)
            static_accuracy = cell(accuracy[f"static_W{value}A{value}"], key, column)
            rows[key] = {
                "supernet": supernet_accuracy,
                "static QAT": static_accuracy,
                "supernet − static": supernet_accuracy - static_accuracy,
            }
        tables["static"] = pd.DataFrame.from_dict(rows, orient="index")

    if "schedule" in config.parts:
        rows = {}
        for label, name in (("joint (EQ-Net)", "eqnet"), ("progressive (OQAT)", "progressive")):
            rows[label] = summary_row(accuracy[name], config.bits)
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
    add_run_arguments(
        parser,
        seed=None,
        seed_help="seeds every variant (default: the base's)",
        outputs="report.md, tables.json and the figures",
        device=None,
        device_help="auto, cpu, cuda",
    )


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
    progress = progress_printer(not args.no_progress)
    report = run_in_directory(
        args.out,
        OUTPUTS,
        force=args.force,
        run=lambda: run_ablations(config, args.out, progress=progress),
    )
    print(report.markdown)
    print(f"report: {report.path}")
    return 0


main = study_entry("ablations")
"""``python -m studies.ablations``: ``eqsearch study ablations``."""


if __name__ == "__main__":
    raise SystemExit(main())
