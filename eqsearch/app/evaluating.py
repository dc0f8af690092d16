"""Subnets of a checkpoint scored on its data: the uniform-bit table, chosen bits, or FP weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from eqsearch.app.request_checks import (
    check_choice,
    check_output_path,
    keyword_arguments,
)
from eqsearch.app.scoring_options import ScoringOptions
from eqsearch.errors import InputError

SPLITS = ("test", "holdout")

Spinner = Callable[[str], AbstractContextManager[Any]]
"""``spinner(text)``: a context manager shown while a long step runs."""


@dataclass(frozen=True)
class EvalRequest(ScoringOptions):
    """What to score and on which images (see :func:`evaluate_checkpoint`).

    Args:
        supernet: a ``supernet.pt`` or ``fp.pt`` checkpoint, or with ``model`` a plain
            full-precision state_dict.
        model: score ``supernet`` as full-precision weights of this model on ``dataset``.
        uniform: W/A bits such as ``"4/4"`` (every paper form, or ``form``).
        subnet: a config JSON file or ``pareto.json#INDEX``.
        form: comma-separated forms of the uniform subnets.
        split: ``test`` or ``holdout``.
        bn_images, val_images, device, dataset, data_root, transforms: the images that
            re-calibrate BN and are scored, the device, the data that overrides the
            checkpoint's (see :class:`~eqsearch.app.scoring_options.ScoringOptions`).
        json: also write the table there as JSON.
        force: replace an existing ``json`` file.
    """

    supernet: str
    model: str | None = None
    uniform: str | None = None
    subnet: str | None = None
    form: str | None = None
    split: str = "test"
    json: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        check_choice(self.split, SPLITS, "split")
        self.check_scoring()
        for name in ("uniform", "form"):
            if self.subnet and getattr(self, name) is not None:
                raise InputError(
                    "a subnet file holds its own bits and forms; drop {field}", field=name
                )
        if self.form is not None and not self.form.strip():
            raise InputError(
                "{field} is empty; give forms such as channel-sym-sym,tensor-asym-asym",
                field="form",
            )
        if self.model is not None:
            for name in ("uniform", "subnet", "form"):
                if getattr(self, name) is not None:
                    raise InputError(
                        "model weights are scored at full precision only; drop {field}", field=name
                    )
            if self.dataset is None:
                raise InputError("weights of a model record no data; give {field}", field="dataset")


@dataclass(frozen=True)
class EvalOutcome:
    """What :func:`evaluate_checkpoint` scored.

    Attributes:
        kind: ``subnets`` (``frame`` holds a row per subnet), ``fp`` (a full-precision
            checkpoint: ``accuracy``) or ``weights`` (``accuracy`` with the weights' own BN
            statistics, ``recalibrated`` with them re-calibrated).
        split, images, calibration_images: the images scored, and those that re-estimated BN.
        frame: the table of subnets (a pandas DataFrame), else None.
        described: which subnets: the subnet file, ``W4/A4``, or "" for the uniform table.
    """

    kind: str
    split: str
    images: int
    calibration_images: int
    frame: Any = None
    accuracy: float | None = None
    recalibrated: float | None = None
    described: str = ""


def evaluate_checkpoint(request: EvalRequest, *, spinner: Spinner | None = None) -> EvalOutcome:
    """Score the request's subnets: the checkpoint is read once, its data built once, each
    subnet's BN statistics re-calibrated before it is scored; ``json`` written last.

    ``spinner`` (optional) is shown while the uniform table is computed.

    Raises:
        InputError: bad request values, a file that is not what it should be, a subnet
            outside the checkpoint's space, a ``json`` path that may not be written.
    """
    if request.json:
        check_output_path(request.json, kind="table", force=request.force, field="json")
    if request.model is not None:
        outcome = _score_weights(request)
    else:
        outcome = _score_checkpoint(request, spinner or (lambda text: nullcontext()))
    if request.json and outcome.frame is not None:
        from eqsearch.files import atomic_write_text

        atomic_write_text(request.json, outcome.frame.to_json(orient="index", indent=2) + "\n")
    elif request.json and outcome.kind == "weights":
        from eqsearch.files import atomic_write_text

        result = {"accuracy": outcome.accuracy, "accuracy_bn_recalibrated": outcome.recalibrated}
        atomic_write_text(request.json, json.dumps(result, indent=2) + "\n")
    return outcome


def _score_checkpoint(request: EvalRequest, spinner: Spinner) -> EvalOutcome:
    from supernet.evaluation.evaluate import (
        evaluate_configs,
        load_for_evaluation,
        supernet_oracle,
        uniform_table,
    )

    supernet, checkpoint, evaluation = load_for_evaluation(
        request.supernet,
        **keyword_arguments(request, load_for_evaluation),
    )
    images = (evaluation.split, len(evaluation.scoring), len(evaluation.calibration))
    if checkpoint.get("kind") == "fp":
        accuracy = supernet_oracle(supernet, evaluation).score(None)
        return EvalOutcome("fp", *images, accuracy=accuracy)
    space = supernet.space
    if request.subnet or request.uniform:
        configs, described = _chosen_configs(request, space)
        frame = evaluate_configs(supernet, evaluation, configs)
        return EvalOutcome("subnets", *images, frame=frame, described=described)
    forms = _forms(request.form, space)
    with spinner("evaluating uniform subnets (BN re-calibrated each)"):
        frame = uniform_table(supernet, evaluation, forms=forms)
    return EvalOutcome("subnets", *images, frame=frame)


def _chosen_configs(request: EvalRequest, space: Any) -> tuple[list[Any], str]:
    """The subnet file's config, or the uniform bits in each requested (or paper) form."""
    from eqsearch.app.subnet_choice import bits_pair, load_config_argument
    from supernet.evaluation.evaluate import PAPER_FORMS

    if request.subnet:
        return [load_config_argument(request.subnet, space)], request.subnet
    w_bits, a_bits = bits_pair(request.uniform or "")
    chosen = _forms(request.form, space) or [f for f in PAPER_FORMS if f in space.forms]
    chosen = chosen or [space.forms[0]]  # e.g. N2UQ: channel-sym-asym only
    return [space.uniform(w_bits, a_bits, form) for form in chosen], f"W{w_bits}/A{a_bits}"


def _forms(text: str | None, space: Any) -> list[Any] | None:
    from eqsearch.space import QuantForm

    if text:
        return [space.check_form(QuantForm.parse(part)) for part in text.split(",")]
    return None


def _score_weights(request: EvalRequest) -> EvalOutcome:
    """Plain full-precision weights scored with their own BN statistics and re-calibrated."""
    from supernet.evaluation.evaluate import (
        fp_accuracy,
        load_weights_for_evaluation,
        supernet_oracle,
    )

    supernet, evaluation = load_weights_for_evaluation(
        request.supernet,
        **keyword_arguments(request, load_weights_for_evaluation),
    )
    return EvalOutcome(
        "weights",
        evaluation.split,
        len(evaluation.scoring),
        len(evaluation.calibration),
        accuracy=fp_accuracy(supernet, evaluation.scoring),
        recalibrated=supernet_oracle(supernet, evaluation).score(None),
    )
