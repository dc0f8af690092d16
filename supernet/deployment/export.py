"""A fixed subnet → ONNX with QuantizeLinear/DequantizeLinear, checked in ONNX Runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_bytes, check_output_file
from eqsearch.space import SubnetConfig
from supernet.data.images import ImageSource, TensorImages
from supernet.deployment.deploy import build_deploy_model, check_exportable, quantize_layers
from supernet.deployment.onnx_trace import (
    DEFAULT_OPSET,
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    TORCHSCRIPT_MAX_OPSET,
    trace_onnx,
)
from supernet.deployment.packed import PackedReport, export_packed_weights, load_packed_weights
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet

if TYPE_CHECKING:
    from supernet.deployment.runtimes.report import RuntimeReport

INT4_MAX_BITS = 4
"""Layers with at most this many weight bits get INT4 storage with ``int4_weights=True``."""


@dataclass(frozen=True)
class ExportReport:
    """What an ONNX export wrote and how closely ONNX Runtime reproduces the PyTorch subnet.

    Attributes:
        path: the ONNX file.
        images: images both runtimes classified.
        top1_agreement: percent of those images where both predict the same class.
        max_logit_diff: the largest absolute difference of any logit.
        torch_accuracy, onnx_accuracy: top-1 percent when labels were given, else None.
        onnx_bytes: size of the ONNX file on disk.
        fp32_bytes: four bytes per parameter of the network (what an FP32 export holds).
        folded_batch_norms, kept_batch_norms: BN layers folded into their conv / kept as nodes.
        quantize_nodes, dequantize_nodes: QuantizeLinear / DequantizeLinear nodes in the graph.
        opset: the ONNX opset.
        int4_layers: layers whose weight integers are stored as INT4 (0 unless asked for).
        runtime: with ``runtime=``, what that runtime ran (integer kernels or float per layer)
            and the export's latency next to the FP32 export of the same architecture.
        widened_layers: with ``runtime=`` and ``int4_weights``, layers kept in int8 storage
            because the runtime does not run INT4 weights as integer kernels.
    """

    path: Path
    images: int
    top1_agreement: float
    max_logit_diff: float
    torch_accuracy: float | None
    onnx_accuracy: float | None
    onnx_bytes: int
    fp32_bytes: int
    folded_batch_norms: int
    kept_batch_norms: int
    quantize_nodes: int
    dequantize_nodes: int
    opset: int
    int4_layers: int = 0
    runtime: RuntimeReport | None = None
    widened_layers: int = 0


def fp32_parameter_bytes(supernet: Supernet) -> int:
    """Bytes of the network's parameters in FP32, quantizer step sizes and offsets excluded."""
    quantizer_parameters = {
        id(p) for layer in supernet.elastic_layers().values() for p in layer.quantizer.parameters()
    }
    return 4 * sum(
        p.numel() for p in supernet.model.parameters() if id(p) not in quantizer_parameters
    )


def _check_output_path(path: Path) -> None:
    # the API replaces an earlier ONNX file, never a file of another kind
    check_output_file(path, kind="onnx", force=True, flag="the output path")


class AgreementError(RuntimeError):
    """ONNX Runtime agreed with PyTorch on too few images; nothing was written.

    Attributes:
        report: what the check measured (its ``path`` was not written).
    """

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


def onnx_session(model_bytes: bytes) -> Any:
    """An ONNX Runtime CPU session with its default graph optimizations (as deployed)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    # Spinning worker threads starve everything else on a shared (CI, notebook) machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )


def onnx_logits(model_bytes: bytes, images: torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """Logits of an exported model in ONNX Runtime for ``images``."""
    session = onnx_session(model_bytes)
    batches = [_session_logits(session, batch) for batch in images.split(batch_size)]
    return np.concatenate(batches)


def _session_logits(session: Any, images: torch.Tensor) -> np.ndarray:
    logits: np.ndarray = session.run([OUTPUT_NAME], {INPUT_NAME: images.float().cpu().numpy()})[0]
    return logits


def _as_source(
    images: torch.Tensor | ImageSource, labels: torch.Tensor | None, batch_size: int
) -> ImageSource:
    """Tensors, and sources held in memory, read in chunks of ``batch_size``; streamed
    sources in their own batches."""
    if isinstance(images, torch.Tensor):
        return TensorImages(images, labels, batch_size)
    if isinstance(images, TensorImages):
        return TensorImages(images.images, images.labels(), batch_size)
    return images


@dataclass(frozen=True)
class _Comparison:
    images: int
    agreement: float
    max_diff: float
    torch_accuracy: float | None
    onnx_accuracy: float | None


@torch.no_grad()
def _compare(
    supernet: Supernet, model_bytes: bytes, verify: ImageSource, labelled: bool
) -> _Comparison:
    """PyTorch's and ONNX Runtime's logits for every verification batch, compared as they
    come (the images are never all in memory at once)."""
    session = onnx_session(model_bytes)
    device = next(supernet.parameters()).device
    images = agree = torch_correct = onnx_correct = 0
    max_diff = 0.0
    for batch, labels in verify.batches():
        reference = supernet(batch.to(device, non_blocking=True)).float().cpu().numpy()
        exported = _session_logits(session, batch)
        predicted, exported_predicted = reference.argmax(1), exported.argmax(1)
        agree += int((predicted == exported_predicted).sum())
        max_diff = max(max_diff, float(np.abs(exported - reference).max()))
        if labelled:
            truth = labels.cpu().numpy()
            torch_correct += int((predicted == truth).sum())
            onnx_correct += int((exported_predicted == truth).sum())
        images += len(batch)
    return _Comparison(
        images,
        agree / images * 100.0,
        max_diff,
        torch_correct / images * 100.0 if labelled else None,
        onnx_correct / images * 100.0 if labelled else None,
    )


def export_onnx(
    supernet: Supernet,
    config: SubnetConfig,
    path: str | Path,
    *,
    verify_images: torch.Tensor | ImageSource,
    verify_labels: torch.Tensor | None = None,
    calibration_images: torch.Tensor | ImageSource | None = None,
    opset: int | None = None,
    fold_batch_norm: bool = False,
    int4_weights: bool = False,
    batch_size: int = 256,
    min_agreement: float | None = None,
    runtime: str | None = None,
    threads: int = 2,
    metadata: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export the subnet ``config`` to ONNX and check it in ONNX Runtime.

    Weights are stored as int8 integers (weight grids are signed) with one DequantizeLinear
    each, per output channel (``axis=0``) for channel granularity; each quantized layer's
    input passes a QuantizeLinear/DequantizeLinear pair with the learned
    step and integer zero point. Grids narrower than 8 bits keep int8/uint8 storage behind a
    Clip to the grid's end points, so the exported model computes what the supernet's fake
    quantizers compute. Full-precision layers stay float.

    BN statistics are re-calibrated for the subnet on ``calibration_images`` (the supernet is
    left as it was) and kept as BatchNormalization nodes by default: runtimes fuse them when
    they build the engine. ``fold_batch_norm=True`` folds a BN into its conv where that is
    exact in real arithmetic: after weight quantization, into per-channel weight scales
    (``scale·γ/σ``, the integers unchanged), when every factor ``γ/σ`` is positive. (Folding
    before quantization would change the integers the supernet learned; folding into a
    per-tensor scale would make it per-channel.) In float32 the folded conv computes
    ``y·f + (β − μ·f)`` instead of ``(y − μ)·f + β``, which loses precision where ``|μ|/σ`` is
    large, and low-bit activation grids turn such last-bit differences into whole steps: on
    4-bit subnets the folded export agreed with PyTorch less often, hence the default.

    A joint supernet's subnet is extracted first (:func:`supernet.networks.extract.extract`, BN
    re-calibrated for it): the file holds the chosen architecture only, and ``fp32_bytes`` is
    that architecture's.

    ``int4_weights=True`` stores the integers of layers with at most 4 weight bits as ONNX INT4
    tensors (two a byte; DequantizeLinear reads INT4 from opset 21), which halves their size
    on disk; the values, and so what the graph computes, stay the same.

    Args:
        supernet: the trained supernet.
        config: the subnet (validated against the space).
        path: the ONNX file to write (atomically).
        verify_images: held-out images both runtimes classify (also fixes the input size): a
            tensor, or an image source (with its labels; one that streams from disk is
            compared batch by batch, never held whole).
        verify_labels: the labels of a tensor of images, to report both accuracies
            (optional).
        calibration_images: images for BN re-calibration (a tensor or an image source);
            None keeps the current statistics.
        opset: ONNX opset (at least 13; at least 21 with ``int4_weights``). None: 17, or 21
            with ``int4_weights``.
        fold_batch_norm: fold BN into per-channel weight scales where exact (see above).
        int4_weights: INT4 storage for the weights of layers with at most 4 bits.
        batch_size: batch size of calibration and verification on tensors (and image
            sources in memory); a streamed source keeps its own.
        min_agreement: percent of images where ONNX Runtime must pick PyTorch's class; below
            it nothing is written and :class:`AgreementError` is raised (None: no check).
        runtime: ``onnxruntime`` or ``openvino``: write the graph so that this runtime fuses
            its layers into integer kernels (:func:`supernet.deployment.onnx_fusable.make_fusable`:
            BN
            folded into widened int8 weights, uint8 activations, clamps as integer Clips
            behind each QuantizeLinear; ``fold_batch_norm`` is implied), keep INT4 storage
            only where the runtime's stored probe ran INT4 weights as integer kernels, and
            report what the runtime ran and how fast, next to the FP32 export.
        threads: the runtime's threads for that report.
        metadata: ``metadata_props`` to write beside the subnet's own
            (:func:`supernet.deployment.onnx_metadata.subnet_metadata`: config, bits and form per
            layer,
            architecture, eqsearch version), such as
            :func:`supernet.deployment.onnx_metadata.source_metadata`'s; these win on equal keys.

    Raises:
        ValueError: bad arguments, a config outside the space, or a layer whose quantizer,
            bits or padding cannot be expressed in ONNX QDQ; nothing is written then.
    """
    import onnx

    from supernet.deployment.onnx_fusable import make_fusable
    from supernet.deployment.onnx_graph import (
        INT4_OPSET,
        count_nodes,
        fold_batch_norms,
        store_int4_weights,
    )
    from supernet.deployment.onnx_metadata import set_metadata, subnet_metadata

    if supernet.joint:
        # the chosen architecture as a static network (BN re-calibrated for it), exported
        from supernet.networks.extract import extract

        check_exportable(supernet)
        static = extract(
            supernet,
            config,
            calibration_images=None
            if calibration_images is None
            else _as_source(calibration_images, None, batch_size).image_batches(),
            batch_size=batch_size,
        )
        static_config = static.active_subnet()
        assert static_config is not None
        return export_onnx(
            static,
            static_config,
            path,
            verify_images=verify_images,
            verify_labels=verify_labels,
            opset=opset,
            fold_batch_norm=fold_batch_norm,
            int4_weights=int4_weights,
            batch_size=batch_size,
            min_agreement=min_agreement,
            runtime=runtime,
            threads=threads,
            # the joint space's layers, bits and architecture, not the extracted network's
            metadata={**subnet_metadata(supernet.space, config), **(metadata or {})},
        )
    path = Path(path)
    _check_output_path(path)
    if opset is None:
        opset = INT4_OPSET if int4_weights else DEFAULT_OPSET
    if opset < MIN_OPSET:
        raise InputError(f"opset must be >= {MIN_OPSET} (per-channel QDQ); got {opset}")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise InputError(f"opset must be <= {newest}, the newest this onnx knows; got {opset}")
    if int4_weights and opset < INT4_OPSET:
        raise InputError(f"int4_weights needs opset >= {INT4_OPSET}; got {opset}")
    if len(verify_images) == 0:
        raise InputError("export_onnx needs at least one verification image")
    labelled = verify_labels is not None or not isinstance(verify_images, torch.Tensor)
    if verify_labels is not None and len(verify_labels) != len(verify_images):
        raise InputError("verify_labels must have one label per verification image")
    verify = _as_source(verify_images, verify_labels, batch_size)
    check_exportable(supernet)
    props = {**subnet_metadata(supernet.space, config), **(metadata or {})}
    quantizations = quantize_layers(supernet, config)  # fail on unexportable bits first
    int4_layers = {
        name
        for name, quantization in quantizations.items()
        if int4_weights
        and not quantization.choice.full_precision
        and quantization.choice.w_bits <= INT4_MAX_BITS
    }
    target = None
    widened = 0
    if runtime is not None:
        from supernet.deployment.runtimes import get_runtime
        from supernet.deployment.runtimes.report import int4_runs_integer

        target = get_runtime(runtime)
        integer4 = {name for name in int4_layers if int4_runs_integer(supernet, name, runtime)}
        widened, int4_layers = len(int4_layers - integer4), integer4
    was_training = supernet.training
    try:
        with preserved_bn_state(supernet), supernet.using(config):
            if calibration_images is not None:
                calibrate_bn(
                    supernet, _as_source(calibration_images, None, batch_size).image_batches()
                )
            supernet.eval()
            deploy = build_deploy_model(supernet, config).cpu()
            example = verify.head(1).tensors()[0].float().cpu()
            model_bytes = trace_onnx(deploy, example, min(opset, TORCHSCRIPT_MAX_OPSET))
            model = onnx.load_from_string(model_bytes)
            if opset > TORCHSCRIPT_MAX_OPSET:
                from onnx import version_converter

                model = version_converter.convert_version(model, opset)
                # The converter leaves inferred shapes of every intermediate tensor: bulky.
                del model.graph.value_info[:]
            if target is not None:
                from supernet.deployment.runtimes.attribution import layer_of_scope

                names = tuple(supernet.elastic_layers())
                fusable = make_fusable(
                    model,
                    lambda node: layer_of_scope(node, names),
                    float_fallback_weights=target.float_fallback_weights,
                )
                folded, kept = fusable.folded_batch_norms, fusable.kept_batch_norms
            else:
                folded, kept = fold_batch_norms(model, enabled=fold_batch_norm)
            stored_int4 = store_int4_weights(model, int4_layers) if int4_layers else 0
            set_metadata(model, props)
            onnx.checker.check_model(model)
            model_bytes = model.SerializeToString()
            comparison = _compare(supernet, model_bytes, verify, labelled)
    finally:
        supernet.train(was_training)
    agreement = comparison.agreement
    report = ExportReport(
        path=path,
        images=comparison.images,
        top1_agreement=agreement,
        max_logit_diff=comparison.max_diff,
        torch_accuracy=comparison.torch_accuracy,
        onnx_accuracy=comparison.onnx_accuracy,
        onnx_bytes=len(model_bytes),
        fp32_bytes=fp32_parameter_bytes(supernet),
        folded_batch_norms=folded,
        kept_batch_norms=kept,
        quantize_nodes=count_nodes(model, "QuantizeLinear"),
        dequantize_nodes=count_nodes(model, "DequantizeLinear"),
        opset=opset,
        int4_layers=stored_int4,
        widened_layers=widened,
    )
    if target is not None:
        from dataclasses import replace

        from supernet.deployment.runtimes.report import runtime_report

        report = replace(
            report,
            runtime=runtime_report(supernet, config, target, model, example, threads),
        )
    if min_agreement is not None and agreement < min_agreement:
        raise AgreementError(
            f"ONNX Runtime agrees with PyTorch on {agreement:.2f}% of the images, below the "
            f"required {min_agreement}%; {path} was not written",
            report,
        )
    atomic_write_bytes(path, model_bytes)
    return report


__all__ = [
    "AgreementError",
    "ExportReport",
    "PackedReport",
    "export_onnx",
    "export_packed_weights",
    "fp32_parameter_bytes",
    "load_packed_weights",
    "onnx_logits",
]
