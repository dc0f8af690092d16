"""``eqsearch export``: a chosen subnet to ONNX (QDQ, checked in ONNX Runtime) or packed weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    bits_pair,
    load_config_argument,
    positive_int,
)
from eqsearch.app.console import make_console, status

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace, SubnetConfig

FORMATS = ("onnx", "weights")
MIN_AGREEMENT = 99.5
"""Percent of images where ONNX Runtime must pick the PyTorch subnet's class."""


def register(commands: Any) -> None:
    """Add the ``export`` subcommand."""
    export = commands.add_parser(
        "export", help="export a subnet: ONNX with QuantizeLinear/DequantizeLinear, or weights"
    )
    add = export.add_argument
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add("--config", help="a config JSON file, or pareto.json#INDEX")
    add("--uniform", help="W/A bits for every searched layer, e.g. 4/4 (instead of --config)")
    add("--form", help="form of --uniform, e.g. channel-sym-sym (default: the first served)")
    add("--out", required=True, help="the file to write: model.onnx, or weights.npz")
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
    add_force_argument(export, "--out file")
    add_progress_argument(export)
    export.set_defaults(handler=_cmd_export)


def _chosen_config(args: argparse.Namespace, space: ElasticSpace) -> SubnetConfig:
    from eqsearch.space import QuantForm

    if bool(args.config) == bool(args.uniform):
        raise UsageError("give exactly one of --config and --uniform")
    if args.form is not None and not args.form.strip():
        raise UsageError("--form is empty; give a form such as channel-sym-sym")
    if args.config:
        if args.form:
            raise UsageError("--form goes with --uniform; a --config file holds its forms")
        return load_config_argument(args.config, space)
    w_bits, a_bits = bits_pair(args.uniform)
    form = space.check_form(QuantForm.parse(args.form)) if args.form else space.forms[0]
    return space.uniform(w_bits, a_bits, form)


def _size(value: int) -> str:
    if value >= 1 << 20:
        return f"{value / (1 << 20):.2f} MiB"
    if value >= 1 << 10:
        return f"{value / (1 << 10):.1f} KiB"
    return f"{value} B"


def _percentage(text: str, flag: str) -> float:
    from eqsearch.numbers import NumberError, parse_number

    try:
        value = parse_number(text)
    except NumberError:
        value = -1.0
    if not 0.0 <= value <= 100.0:
        raise UsageError(f"{flag} must be a percentage in 0..100; got {text}")
    return value


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


def _cmd_export(args: argparse.Namespace) -> int:
    from eqsearch import costs
    from eqsearch.files import check_output_file
    from supernet.deployment.deploy import check_exportable
    from supernet.files.checkpoint import load_supernet

    out = Path(args.out)
    args.min_agreement = _percentage(args.min_agreement, "--min-agreement")
    if args.format == "weights" and out.suffix != ".npz":
        raise UsageError(f"--format weights writes an .npz file; got --out {args.out}")
    if args.format == "onnx" and out.suffix != ".onnx":
        raise UsageError(f"--format onnx writes an .onnx file; got --out {args.out}")
    if args.format == "weights" and (args.int4_weights or args.opset is not None):
        raise UsageError("--int4-weights and --opset go with --format onnx")
    if args.int4_weights and args.opset is not None and args.opset < 21:
        raise UsageError(f"--int4-weights needs --opset 21 or later; got {args.opset}")
    if args.runtime is not None:
        from eqsearch.app.commands.runtime import check_runtime

        if args.format != "onnx":
            raise UsageError("--runtime goes with --format onnx")
        check_runtime(args.runtime)
    check_output_file(out, kind="onnx" if args.format == "onnx" else "weights", force=args.force)
    if not Path(args.supernet).is_file():
        raise UsageError(f"checkpoint not found: {args.supernet}")
    supernet, checkpoint = load_supernet(args.supernet)
    if checkpoint.get("kind") == "fp":
        raise UsageError(f"{args.supernet} is a full-precision model; export a supernet.pt")
    config = _chosen_config(args, supernet.space)
    check_exportable(supernet)
    console = make_console()
    what = args.config or f"uniform W/A {args.uniform} {config.choices[-1].form}"
    table = Table(title=f"{args.format} export of {what}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("avg weight bits", f"{costs.average_weight_bits(supernet.space, config):.2f}")
    table.add_row(
        "avg activation bits", f"{costs.average_activation_bits(supernet.space, config):.2f}"
    )
    if args.format == "weights":
        from supernet.deployment.export import export_packed_weights

        packed = export_packed_weights(supernet, config, out)
        table.add_row("layers (quantized)", f"{packed.layers} ({packed.quantized_layers})")
        table.add_row("weights + biases", f"{packed.parameters:,}")
        table.add_row("FP32 size", _size(packed.fp32_bytes))
        table.add_row("packed integers", _size(packed.payload_bytes))
        table.add_row("file on disk", _size(packed.file_bytes))
        table.add_row("compression (FP32 / file)", f"{packed.fp32_bytes / packed.file_bytes:.2f}×")
        console.print(table)
        console.print(f"wrote {out}")
        return EXIT_OK
    return _export_onnx(args, supernet, checkpoint, config, out, table, console)


def _export_onnx(
    args: argparse.Namespace,
    supernet: Any,
    checkpoint: dict[str, Any],
    config: SubnetConfig,
    out: Path,
    table: Table,
    console: Any,
) -> int:
    from supernet.deployment.export import AgreementError, export_onnx
    from supernet.deployment.onnx_metadata import source_metadata
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set, stored_bn_images

    data = checkpoint_data(checkpoint, data_root=args.data_root)
    evaluation = evaluation_set(
        data,
        split=args.split,
        bn_images=args.bn_images or stored_bn_images(checkpoint),
        val_images=args.val_images,
    )
    with status(console, "exporting and running ONNX Runtime", not args.no_progress):
        try:
            report = export_onnx(
                supernet,
                config,
                out,
                verify_images=evaluation.scoring,
                calibration_images=evaluation.calibration,
                opset=args.opset,
                fold_batch_norm=args.fold_bn,
                int4_weights=args.int4_weights,
                min_agreement=args.min_agreement,
                runtime=args.runtime,
                threads=args.threads,
                metadata=source_metadata(checkpoint, args.supernet, data.normalization),
            )
        except AgreementError as error:
            report, failed = error.report, str(error)
        else:
            failed = ""
    table.add_row("images checked", f"{report.images} ({evaluation.split} split)")
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
    console.print(table)
    if failed:
        print(f"error: {failed.replace('the required', '--min-agreement')}", file=sys.stderr)
        return EXIT_FAILURE
    console.print(f"wrote {out}")
    return EXIT_OK
