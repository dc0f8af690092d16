"""Tracing a deployable network to ONNX bytes: the opsets and the graph's input and output names."""

from __future__ import annotations

import io
import warnings

import torch

DEFAULT_OPSET = 17
MIN_OPSET = 13
"""Per-channel QuantizeLinear/DequantizeLinear (the ``axis`` attribute) needs opset 13."""
TORCHSCRIPT_MAX_OPSET = 20
"""Highest opset torch's TorchScript exporter writes; higher ones go through onnx's converter."""
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def trace_onnx(model: torch.nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """``model`` traced on ``example`` to an ONNX model (bytes) with a dynamic batch axis."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript and does not run autograd Functions' ONNX symbolics.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    return buffer.getvalue()
