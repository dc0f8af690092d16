"""``eqsearch export``: a chosen subnet to ONNX (QDQ, checked in ONNX Runtime) or packed weights."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_image_count_arguments,
    add_progress_argument,
    add_renamed_option,
    positive_int,
)
from eqsearch.app.commands.output_options import add_output_file_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, status
from eqsearch.app.exporting import FORMATS, MIN_AGREEMENT, ExportOutcome

SUBNET_HELP = "the subnet: a config JSON file, or pareto.json#INDEX"


def register(commands: Any) -> None:
    """Add the ``export`` subcommand."""
    export = commands.add_parser(
        "export", help="export a subnet: ONNX with QuantizeLinear/DequantizeLinear, or weights"
    )
    add = export.add_argument
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add("--subnet", help=SUBNET_HELP)
    add_renamed_option(export, "--config", "--subnet", dest="subnet")
    add("--uniform", help="W/A bits for every searched layer, e.g. 4/4 (instead of --subnet)")
    add("--form", help="form of --uniform, e.g. channel-sym-sym (default: the first served)")
    add_output_file_arguments(export, "the file to write: model.onnx, or weights.npz (required)")
    add("--format", default="onnx", choices=FORMATS, help="onnx (default) or packed weights")
    add(
        "--opset",
        type=positive_int,
        help="ONNX opset (>= 13; default 17, or 21 with --int4-weights)",
    )
    add("--fold-bn", action="store_true", help="fold BN into per-channel weight scales")
    add(
        "--int4-weights",
        action="store_true",
        help="store weights of layers with <= 4 bits as ONNX INT4 (opset >= 21)",
    )
    add(
        "--runtime",
        help="onnxruntime or openvino: write the graph so that this runtime fuses it into "
        "integer kernels, and report what it ran and its latency next to the FP32 export",
    )
    add("--threads", type=positive_int, default=2, help="with --runtime: its threads")
    add("--split", default="test", choices=("test", "holdout"), help="images to verify on")
    add("--data-root", help="override the data root stored in the checkpoint")
    add_image_count_arguments(
        export, "images of --split ONNX Runtime is checked on: a fixed subset (default: all)"
    )
    add(
        "--min-agreement",
        type=str,
        default=str(MIN_AGREEMENT),
        help=f"exit 1 when ONNX Runtime agrees on fewer %% of images (default {MIN_AGREEMENT})",
    )
    add_progress_argument(export)
    export.set_defaults(
        handler=_cmd_export, field_flags={"calib_images": "--calib-images", "format": "--format"}
    )


def _cmd_export(args: argparse.Namespace) -> int:
    from eqsearch.app.exporting import ExportRequest, export_subnet

    request = request_from(args, ExportRequest)
    console = make_console()
    outcome = export_subnet(
        request, progress=lambda text: status(console, text, not args.no_progress)
    )
    console.print(_report_table(outcome, args.format))
    if outcome.failed:
        print(
            f"error: {outcome.failed.replace('the required', '--min-agreement')}", file=sys.stderr
        )
        return EXIT_FAILURE
    console.print(f"wrote {outcome.path}")
    return EXIT_OK


def _size(value: int) -> str:
    if value >= 1 << 20:
        return f"{value / (1 << 20):.2f} MiB"
    if value >= 1 << 10:
        return f"{value / (1 << 10):.1f} KiB"
    return f"{value} B"


def _report_table(outcome: ExportOutcome, format: str) -> Table:
    """The export's facts: the subnet's average bits, then what the file holds."""
    table = Table(title=f"{format} export of {outcome.described}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("avg weight bits", f"{outcome.w_bits:.2f}")
    table.add_row("avg activation bits", f"{outcome.a_bits:.2f}")
    if outcome.packed is not None:
        packed = outcome.packed
        table.add_row("layers (quantized)", f"{packed.layers} ({packed.quantized_layers})")
        table.add_row("weights + biases", f"{packed.parameters:,}")
        table.add_row("FP32 size", _size(packed.fp32_bytes))
        table.add_row("packed integers", _size(packed.payload_bytes))
        table.add_row("file on disk", _size(packed.file_bytes))
        table.add_row("compression (FP32 / file)", f"{packed.fp32_bytes / packed.file_bytes:.2f}×")
    else:
        _onnx_rows(table, outcome)
    return table


def _onnx_rows(table: Table, outcome: ExportOutcome) -> None:
    report = outcome.report
    table.add_row("images checked", f"{report.images} ({outcome.split} split)")
    table.add_row("top-1 agreement ORT vs PyTorch", f"{report.top1_agreement:.2f}%")
    table.add_row("max |logit diff|", f"{report.max_logit_diff:.3g}")
    if report.torch_accuracy is not None and report.onnx_accuracy is not None:
        table.add_row(
            "top-1 PyTorch / ORT", f"{report.torch_accuracy:.2f}% / {report.onnx_accuracy:.2f}%"
        )
    table.add_row(
        "QuantizeLinear / DequantizeLinear", f"{report.quantize_nodes} / {report.dequantize_nodes}"
    )
    table.add_row("BN folded / kept", f"{report.folded_batch_norms} / {report.kept_batch_norms}")
    table.add_row("opset / layers with INT4 weights", f"{report.opset} / {report.int4_layers}")
    table.add_row("FP32 parameters", _size(report.fp32_bytes))
    table.add_row("ONNX file", _size(report.onnx_bytes))
    if report.runtime is not None:
        _runtime_rows(table, report)


def _runtime_rows(table: Table, report: Any) -> None:
    measured = report.runtime
    table.add_row("runtime", f"{measured.runtime}, {measured.threads} threads, batch 1")
    table.add_row(
        "layers run as integer kernels / float",
        f"{len(measured.integer_layers)} / {len(measured.float_layers)}",
    )
    if report.widened_layers:
        table.add_row("INT4 layers kept in int8 (INT4 runs in float)", str(report.widened_layers))
    table.add_row(
        "latency: export / FP32 export",
        f"{measured.latency_ms:.3f} ms / {measured.fp32_latency_ms:.3f} ms "
        f"({measured.speedup:.2f}× FP32; medians of {measured.repeats}, "
        f"spread {100 * measured.spread:.0f}%)",
    )
