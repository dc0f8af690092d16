"""A chosen subnet of a checkpoint exported as ONNX (checked in ONNX Runtime) or packed weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.app.request_checks import (
    check_checkpoint_file,
    check_choice,
    check_output_path,
    check_positive,
    percentage,
)
from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, SubnetConfig

FORMATS = ("onnx", "weights")
SUFFIXES = {"onnx": ".onnx", "weights": ".npz"}
SPLITS = ("test", "holdout")
MIN_AGREEMENT = 99.5
"""Percent of images where ONNX Runtime must pick the PyTorch subnet's class."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export, where and how (see :func:`export_subnet`).

    Args:
        supernet: a ``supernet.pt`` checkpoint.
        output: the file to write: ``.onnx`` for ``format="onnx"``, ``.npz`` for weights.
        subnet: a config JSON file or ``pareto.json#INDEX`` (or give ``uniform``).
        uniform: W/A bits such as ``"4/4"`` for every searched layer (or give ``subnet``).
        form: the form of ``uniform`` (default: the space's first).
        format: ``onnx`` or ``weights``.
        opset, fold_bn, int4_weights, runtime, threads: the ONNX export's settings
            (:func:`supernet.deployment.export.export_onnx`).
        split, data_root, bn_images, val_images: the images ONNX Runtime is checked on (BN
            re-calibrated on ``bn_images``).
        min_agreement: percent of images where ONNX Runtime must agree with PyTorch (a
            number or its text).
        force: replace an existing output of the same kind.
    """

    supernet: str
    output: str | None
    subnet: str | None = None
    uniform: str | None = None
    form: str | None = None
    format: str = "onnx"
    opset: int | None = None
    fold_bn: bool = False
    int4_weights: bool = False
    runtime: str | None = None
    threads: int = 2
    split: str = "test"
    data_root: str | None = None
    bn_images: int | None = None
    val_images: int | None = None
    min_agreement: float | str = MIN_AGREEMENT
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_agreement", percentage(self.min_agreement, "min_agreement"))
        check_choice(self.format, FORMATS, "format")
        check_choice(self.split, SPLITS, "split")
        for name in ("opset", "threads", "bn_images", "val_images"):
            check_positive(getattr(self, name), name)
        if bool(self.subnet) == bool(self.uniform):
            raise InputError("give {field} or uniform bits (one of them)", field="subnet")
        if self.form is not None and not self.form.strip():
            raise InputError("{field} is empty; give a form such as channel-sym-sym", field="form")
        if self.subnet and self.form:
            raise InputError("a subnet file holds its own forms; drop {field}", field="form")
        if not self.output:
            raise InputError("give {field}: the file to write", field="output")
        suffix = SUFFIXES[self.format]
        if Path(self.output).suffix != suffix:
            raise InputError(
                f"format {self.format} writes a {suffix} file; got {{field}} {self.output}",
                field="output",
            )
        self._check_onnx_settings()

    def _check_onnx_settings(self) -> None:
        if self.format == "weights" and (self.int4_weights or self.opset is not None):
            raise InputError("{field} and an opset go with the ONNX format", field="int4_weights")
        if self.int4_weights and self.opset is not None and self.opset < 21:
            raise InputError(
                f"{{field}} needs opset 21 or later; got {self.opset}", field="int4_weights"
            )
        if self.runtime is not None:
            from eqsearch.app.probing import check_runtime

            if self.format != "onnx":
                raise InputError("{field} goes with the ONNX format", field="runtime")
            check_runtime(self.runtime)


@dataclass(frozen=True)
class ExportOutcome:
    """What :func:`export_subnet` wrote.

    Attributes:
        path: the file written (nothing is written when ``failed``).
        config: the exported subnet; ``described``: the subnet file, or its uniform bits.
        w_bits, a_bits: its average weight and activation bits.
        packed: the packed-weights report (``format="weights"``), else None.
        report: the ONNX report (``format="onnx"``), else None; ``split``: its images.
        failed: why ONNX Runtime's agreement was refused ("" when it was not).
    """

    path: Path
    config: SubnetConfig
    described: str
    w_bits: float
    a_bits: float
    packed: Any = None
    report: Any = None
    split: str = ""
    failed: str = ""


def chosen_config(request: ExportRequest, space: ElasticSpace) -> SubnetConfig:
    """The request's subnet in ``space``: read (and validated) once, or built uniform.

    Raises:
        InputError: the file or its bits or form are not of the space.
    """
    from eqsearch.app.subnet_choice import bits_pair, load_config_argument
    from eqsearch.space import QuantForm

    if request.subnet:
        return load_config_argument(request.subnet, space)
    w_bits, a_bits = bits_pair(request.uniform or "")
    form = space.check_form(QuantForm.parse(request.form)) if request.form else space.forms[0]
    return space.uniform(w_bits, a_bits, form)


def export_subnet(request: ExportRequest, *, progress: Any = None) -> ExportOutcome:
    """Export the request's subnet: read the checkpoint once, validate the subnet once, write.

    ``progress`` (optional) is a context manager factory, ``progress(text)``, shown around
    the ONNX export and its check in ONNX Runtime.

    Raises:
        InputError: bad request values, a full-precision checkpoint, a subnet outside the
            space, an output that may not be written.
    """
    from eqsearch import costs
    from supernet.deployment.deploy import check_exportable
    from supernet.files.checkpoint import load_supernet

    check_checkpoint_file(request.supernet)
    out = check_output_path(
        request.output or "", kind=request.format, force=request.force, field="output"
    )
    supernet, checkpoint = load_supernet(request.supernet)
    if checkpoint.get("kind") == "fp":
        raise InputError(
            f"{request.supernet} is a full-precision model; export a supernet.pt", field="supernet"
        )
    config = chosen_config(request, supernet.space)
    check_exportable(supernet)
    batch = supernet.space.batch([config])  # the costs read the validated batch
    outcome = ExportOutcome(
        path=out,
        config=config,
        described=request.subnet or f"uniform W/A {request.uniform} {config.choices[-1].form}",
        w_bits=float(costs.average_weight_bits(supernet.space, batch)[0]),
        a_bits=float(costs.average_activation_bits(supernet.space, batch)[0]),
    )
    if request.format == "weights":
        from dataclasses import replace

        from supernet.deployment.export import export_packed_weights

        return replace(outcome, packed=export_packed_weights(supernet, config, out))
    return _export_onnx(request, supernet, checkpoint, outcome, progress)


def _export_onnx(
    request: ExportRequest,
    supernet: Any,
    checkpoint: dict[str, Any],
    outcome: ExportOutcome,
    progress: Any,
) -> ExportOutcome:
    from contextlib import nullcontext
    from dataclasses import replace

    from supernet.deployment.export import AgreementError, export_onnx
    from supernet.deployment.onnx_metadata import source_metadata
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set, stored_bn_images

    data = checkpoint_data(checkpoint, data_root=request.data_root)
    evaluation = evaluation_set(
        data,
        split=request.split,
        bn_images=request.bn_images or stored_bn_images(checkpoint),
        val_images=request.val_images,
    )
    shown = progress("exporting and running ONNX Runtime") if progress else nullcontext()
    with shown:
        try:
            report = export_onnx(
                supernet,
                outcome.config,
                outcome.path,
                verify_images=evaluation.scoring,
                calibration_images=evaluation.calibration,
                opset=request.opset,
                fold_batch_norm=request.fold_bn,
                int4_weights=request.int4_weights,
                min_agreement=request.min_agreement,  # type: ignore[arg-type]  # a float now
                runtime=request.runtime,
                threads=request.threads,
                metadata=source_metadata(checkpoint, request.supernet, data.normalization),
            )
        except AgreementError as error:
            return replace(outcome, report=error.report, split=evaluation.split, failed=str(error))
    return replace(outcome, report=report, split=evaluation.split)
