"""Evaluating a trained supernet: data of a checkpoint, single configs, the uniform-bit table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from eqsearch import costs
from eqsearch.space import QuantForm, SubnetConfig
from supernet.checkpoint import load_supernet
from supernet.data import DataBundle, DataSpec, build_data
from supernet.elastic import Supernet
from supernet.oracle import SupernetOracle, subnet_accuracy
from supernet.parallel import default_workers

PAPER_FORMS = (
    QuantForm("channel", True, True),
    QuantForm("channel", False, False),
    QuantForm("tensor", True, True),
    QuantForm("tensor", False, False),
)
"""The four weight/activation forms of EQ-Net's tables: per-channel or per-tensor weights,
weights and activations both symmetric or both asymmetric."""

SPLITS = ("test", "holdout")


@dataclass
class EvaluationSet:
    """Images a supernet is scored on, and the images its BN statistics come from."""

    images: torch.Tensor
    labels: torch.Tensor
    calibration_images: torch.Tensor
    split: str


def checkpoint_data(
    checkpoint: dict[str, Any], *, data_root: str | None = None, holdout: int | None = None
) -> DataBundle:
    """The dataset a checkpoint was trained on (``data_root`` overrides the stored root)."""
    stored = dict(checkpoint.get("data") or {})
    if not stored:
        raise ValueError("the checkpoint does not record its dataset; it cannot be evaluated")
    spec = DataSpec(**stored)
    if data_root is not None:
        spec = replace(spec, root=data_root)
    if holdout is not None:
        spec = replace(spec, holdout=holdout)
    return build_data(spec)


def evaluation_set(
    data: DataBundle, *, split: str = "test", bn_images: int = 1000
) -> EvaluationSet:
    """The images of ``split`` (``test`` or the ``holdout`` slice of the training set)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    images, labels = data.test_tensors() if split == "test" else data.holdout_tensors()
    return EvaluationSet(images, labels, data.calibration_images(bn_images), split)


def load_for_evaluation(
    path: str | Path,
    *,
    data_root: str | None = None,
    split: str = "holdout",
    bn_images: int | None = None,
    device: str = "cpu",
) -> tuple[Supernet, dict[str, Any], EvaluationSet]:
    """Load a checkpoint, its data and the evaluation images in one call."""
    supernet, checkpoint = load_supernet(path, map_location=device)
    data = checkpoint_data(checkpoint, data_root=data_root)
    count = bn_images or int((checkpoint.get("train_config") or {}).get("bn_images", 1000))
    return supernet, checkpoint, evaluation_set(data, split=split, bn_images=count)


def supernet_oracle(
    supernet: Supernet,
    evaluation: EvaluationSet,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> SupernetOracle:
    """A :class:`SupernetOracle` over an evaluation set.

    Args:
        workers: CPU worker processes for calls with several configs; by default one per
            usable core (:func:`supernet.parallel.default_workers`). On a CPU shared with
            other work, one torch thread per process also avoids the waits of intra-op
            threads (see :mod:`supernet.parallel`).
    """
    return SupernetOracle(
        supernet,
        evaluation.images,
        evaluation.labels,
        evaluation.calibration_images,
        progress=progress,
        workers=default_workers() if workers is None else workers,
    )


def evaluate_configs(
    supernet: Supernet, evaluation: EvaluationSet, configs: Sequence[SubnetConfig]
) -> pd.DataFrame:
    """Accuracy and costs of each config (one row per config)."""
    oracle = supernet_oracle(supernet, evaluation)
    accuracy = oracle.evaluate(configs)
    table = costs.cost_table(supernet.space, configs)
    frame = pd.DataFrame(table)
    frame.insert(0, "accuracy", accuracy)
    frame.insert(0, "form", [str(c.uniform_form or "mixed") for c in configs])
    return frame


def uniform_table(
    supernet: Supernet,
    evaluation: EvaluationSet,
    *,
    bits: Sequence[int] | None = None,
    forms: Sequence[QuantForm] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The paper-style table: accuracy of uniform W=A bit subnets per form, plus full precision.

    Rows are ``"W8/A8"`` … ``"W2/A2"`` and ``"FP32"``; columns are the forms (by default the
    paper's four that the space has). Every entry is BN-recalibrated.
    """
    space = supernet.space
    shared = sorted(set(space.w_bits) & set(space.a_bits), reverse=True)
    chosen_bits = sorted(bits or shared, reverse=True)
    for value in chosen_bits:
        if value not in shared:
            raise ValueError(f"{value} bits is not a weight and activation bit width of the space")
    chosen_forms = list(forms) if forms else [f for f in PAPER_FORMS if f in space.forms]
    if not chosen_forms:
        chosen_forms = [space.forms[0]]
    for form in chosen_forms:
        space.check_form(form)
    total = len(chosen_bits) * len(chosen_forms) + 1
    configs = [space.uniform(value, value, form) for value in chosen_bits for form in chosen_forms]
    oracle = supernet_oracle(
        supernet,
        evaluation,
        progress=None if progress is None else (lambda done: progress(done, total)),
    )
    scores = iter(oracle.evaluate(configs).tolist())
    rows: dict[str, dict[str, float]] = {
        f"W{value}/A{value}": {str(form): next(scores) for form in chosen_forms}
        for value in chosen_bits
    }
    full_precision = subnet_accuracy(
        supernet, None, evaluation.images, evaluation.labels, evaluation.calibration_images
    )
    rows["FP32"] = {str(form): full_precision for form in chosen_forms}
    if progress is not None:
        progress(total, total)
    return pd.DataFrame.from_dict(rows, orient="index")
