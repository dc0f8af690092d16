"""What a demo measured, and how it is printed (rich tables) and summarised (JSON, Markdown)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.demo_settings import DemoSettings
from eqsearch.files import atomic_write_text

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.pareto import ParetoFront


@dataclass
class DemoResult:
    """Where the demo put things and what it measured."""

    out: Path
    checkpoint: Path
    predictor_metrics: dict[str, dict[str, float]]
    chosen_backend: str
    searches: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    fronts: dict[str, ParetoFront] = field(repr=False)
    export: dict[str, Any] = field(default_factory=dict)


def print_export(console: Console, export: dict[str, Any]) -> None:
    """Print the checks of the exported config (``export`` as ``DemoResult.export``)."""
    from rich.table import Table

    table = Table(title=f"pymoo front config #{export['front_index']} exported (export/)")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_row("test images", str(export["images"]))
    table.add_row("top-1 PyTorch / ONNX Runtime", _percent_pair(export))
    table.add_row("top-1 agreement", f"{export['top1_agreement']:.2f} %")
    table.add_row("max |logit difference|", f"{export['max_logit_diff']:.3g}")
    table.add_row("FP32 weights", f"{export['fp32_bytes']:,} B")
    table.add_row("model.onnx (int8 storage)", f"{export['onnx_bytes']:,} B")
    table.add_row("weights.npz (packed at bit width)", f"{export['packed_bytes']:,} B")
    console.print(table)


def _percent_pair(export: dict[str, Any]) -> str:
    torch_accuracy, onnx_accuracy = export["torch_accuracy"], export["onnx_accuracy"]
    if torch_accuracy is None or onnx_accuracy is None:
        return "-"
    return f"{torch_accuracy:.2f} / {onnx_accuracy:.2f} %"


def print_metrics(
    console: Console, metrics: dict[str, dict[str, float]], chosen: str, n_fit: int, n_test: int
) -> None:
    """Print each backend's held-out metrics, marking the ``chosen`` one that drives the
    searches (fitted on ``n_fit`` subnets, scored on ``n_test``)."""
    from rich.table import Table

    table = Table(title=f"predictors: fitted on {n_fit} subnets, scored on {n_test} held out")
    table.add_column("backend")
    keys = list(next(iter(metrics.values())))
    for key in keys:
        table.add_column(key, justify="right")
    for backend, values in metrics.items():
        name = f"{backend} (drives the search)" if backend == chosen else backend
        table.add_row(name, *(f"{values[key]:.3f}" for key in keys))
    console.print(table)


def print_summary(console: Console, demo: DemoResult, front_table: Any) -> None:
    """Print both searches, the first engine's verified front (through ``front_table``) and
    the total time."""
    from rich.table import Table

    from eqsearch.app.console import print_frame

    table = Table(title="NSGA-II searches (predictor-driven, verified on the supernet)")
    for column in ("engine", "seconds", "front", "hypervolume", "best acc.", "Kendall τ"):
        table.add_column(column, justify="right")
    for engine, row in demo.searches.items():
        tau = row["kendall_tau"]
        table.add_row(
            engine,
            f"{row['seconds']:.1f}",
            str(row["front_size"]),
            f"{row['hypervolume']:.4g}",
            f"{row['best_accuracy']:.2f}",
            "-" if tau is None else f"{tau:.2f}",
        )
    console.print(table)
    first = next(iter(demo.fronts))
    print_frame(console, _verified_rows(front_table(demo.fronts[first])), f"{first} front")
    total = sum(demo.seconds.values())
    console.print(f"every file is under {demo.out}/ — {total:.0f} s in all")


def _verified_rows(frame: Any) -> Any:
    if "measured_accuracy" in frame.columns:
        return frame[frame["measured_accuracy"].notna()]
    return frame


def write_summary(demo: DemoResult, settings: DemoSettings, front_table: Any) -> None:
    """Write ``summary.json`` (settings, times, metrics, searches, export) and ``summary.md``
    (the searches, each verified front, the export) under ``demo.out``."""
    summary = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "train_overrides"},
        "seconds": demo.seconds,
        "predictors": demo.predictor_metrics,
        "chosen_predictor": demo.chosen_backend,
        "searches": demo.searches,
        "export": demo.export,
    }
    atomic_write_text(demo.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    lines = ["# eqsearch demo", "", "| engine | seconds | front | best acc. | Kendall τ |"]
    lines.append("|---|---|---|---|---|")
    for engine, row in demo.searches.items():
        tau = "-" if row["kendall_tau"] is None else f"{row['kendall_tau']:.2f}"
        lines.append(
            f"| {engine} | {row['seconds']:.1f} | {row['front_size']} | "
            f"{row['best_accuracy']:.2f} | {tau} |"
        )
    for engine, front in demo.fronts.items():
        frame = _verified_rows(front_table(front))
        lines += ["", f"## {engine} front (verified configs)", "", *_markdown(frame)]
    if demo.export:
        export = demo.export
        lines += [
            "",
            f"## Export of pymoo front config #{export['front_index']}",
            "",
            f"- top-1 on {export['images']} test images, PyTorch / ONNX Runtime: "
            f"{_percent_pair(export)}; agreement {export['top1_agreement']:.2f} %, "
            f"max |logit difference| {export['max_logit_diff']:.3g}",
            f"- FP32 weights {export['fp32_bytes']:,} B; model.onnx {export['onnx_bytes']:,} B; "
            f"weights.npz {export['packed_bytes']:,} B",
        ]
    atomic_write_text(demo.out / "summary.md", "\n".join(lines) + "\n")


def _markdown(frame: Any) -> list[str]:
    """A DataFrame as a Markdown table (numbers with four significant digits)."""
    from eqsearch.app.console import format_cell

    header = ["#", *map(str, frame.columns)]
    rows = [
        [str(index), *(format_cell(value) for value in row.tolist())]
        for index, row in frame.iterrows()
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
