"""Evaluating a trained supernet: data of a checkpoint, single configs, the uniform-bit table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.space import QuantForm, SubnetConfig
from supernet.data.bundle import DataBundle
from supernet.data.datasets import build_data
from supernet.data.images import ImageSource, TensorImages
from supernet.data.spec import DataSpec, check_dataset_named_by_file
from supernet.evaluation.oracle import SupernetOracle
from supernet.files.checkpoint import load_supernet
from supernet.networks.elastic import Supernet
from supernet.parallel import default_workers

PAPER_FORMS = (
    QuantForm("channel", True, True),
    QuantForm("channel", False, False),
    QuantForm("tensor", True, True),
    QuantForm("tensor", False, False),
)
"""The four weight/activation forms of EQ-Net's tables: per-channel or per-tensor weights,
weights and activations both symmetric or both asymmetric."""


@dataclass
class EvaluationSet:
    """Images a supernet is scored on (M), and the images its BN statistics come from (N).

    Both are image sources: tensors for the embedded datasets, streamed from disk in
    batches for folder datasets (see :mod:`supernet.data.images`).
    """

    scoring: ImageSource
    calibration: ImageSource
    split: str

    @classmethod
    def from_tensors(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        calibration_images: torch.Tensor,
        split: str,
        *,
        batch_size: int = 500,
    ) -> EvaluationSet:
        """An evaluation set of tensors in memory, read in batches of ``batch_size``."""
        return cls(
            TensorImages(images, labels, batch_size),
            TensorImages(calibration_images, None, batch_size),
            split,
        )

    @property
    def images(self) -> torch.Tensor:
        """The scoring images as one tensor (decoded whole where they stream: small sets)."""
        return self.scoring.tensors()[0]

    @property
    def labels(self) -> torch.Tensor:
        """The scoring labels, in order."""
        return self.scoring.labels()

    @property
    def calibration_images(self) -> torch.Tensor:
        """The calibration images as one tensor (decoded whole where they stream)."""
        return self.calibration.tensors()[0]


def stored_bn_images(checkpoint: dict[str, Any]) -> int:
    """The BN re-calibration images (N) a checkpoint's training used (1000 if unrecorded)."""
    return int((checkpoint.get("train_config") or {}).get("bn_images", 1000))


def checkpoint_data(
    checkpoint: dict[str, Any],
    *,
    data_root: str | None = None,
    holdout: int | None = None,
    dataset: str | None = None,
    transforms: str | None = None,
) -> DataBundle:
    """The dataset a checkpoint was trained on.

    ``data_root``, ``dataset`` (a name or a factory the caller names) and ``transforms``
    override the stored values. A dataset factory the checkpoint names is run only where the
    user named it too (``--trust-dataset``;
    :func:`supernet.data.spec.check_dataset_named_by_file`).
    """
    stored = dict(checkpoint.get("data") or {})
    if not stored and dataset is None:
        raise InputError("the checkpoint does not record its dataset; it cannot be evaluated")
    if dataset is not None:
        stored["name"] = dataset
    else:
        check_dataset_named_by_file(stored.get("name"), source="the checkpoint")
    spec = DataSpec(**stored)
    if data_root is not None:
        spec = replace(spec, root=data_root)
    if holdout is not None:
        spec = replace(spec, holdout=holdout)
    if transforms is not None:
        spec = replace(spec, transforms=transforms)
    return build_data(spec)


def evaluation_set(
    data: DataBundle,
    *,
    split: str = "test",
    bn_images: int = 1000,
    val_images: int | None = None,
) -> EvaluationSet:
    """The images of ``split`` (``test`` or the ``holdout`` slice of the training set) and
    the calibration images.

    Args:
        data: the dataset.
        split: ``test`` or ``holdout``.
        bn_images: BN re-calibration images (N, the first of the fixed calibration order).
        val_images: scoring images (M): a fixed subset of the test split, or a held-out
            slice of this size; None: the whole test split or the spec's holdout.
    """
    return EvaluationSet(data.scoring(split, val_images), data.calibration_source(bn_images), split)


def load_for_evaluation(
    path: str | Path,
    *,
    data_root: str | None = None,
    split: str = "holdout",
    bn_images: int | None = None,
    val_images: int | None = None,
    device: str = "cpu",
    dataset: str | None = None,
    transforms: str | None = None,
) -> tuple[Supernet, dict[str, Any], EvaluationSet]:
    """Load a checkpoint, its data and the evaluation images in one call (``bn_images``:
    the checkpoint's training setting by default; see :func:`evaluation_set`; ``dataset``
    and ``transforms`` as :func:`checkpoint_data` takes them)."""
    supernet, checkpoint = load_supernet(path, map_location=device)
    data = checkpoint_data(checkpoint, data_root=data_root, dataset=dataset, transforms=transforms)
    count = bn_images or stored_bn_images(checkpoint)
    evaluation = evaluation_set(data, split=split, bn_images=count, val_images=val_images)
    return supernet, checkpoint, evaluation


def load_weights_for_evaluation(
    path: str | Path,
    *,
    model: str,
    dataset: str,
    data_root: str | None = None,
    split: str = "test",
    bn_images: int | None = None,
    val_images: int | None = None,
    device: str = "cpu",
    transforms: str | None = None,
) -> tuple[Supernet, EvaluationSet]:
    """A supernet of ``model`` for ``dataset`` holding the full-precision weights in ``path``
    (a torchvision-style state_dict or an eqsearch checkpoint, read as ``train --init`` reads
    it: :func:`supernet.files.initial_weights.load_initial_weights`), and the evaluation images.

    Its quantizers are never used: score it with ``subnet=None`` (:func:`fp_accuracy`, or the
    oracle's ``score(None)`` with BN re-calibrated). ``bn_images``: 1000 by default.

    Raises:
        InputError: the model, the data or the file (one line naming the key that does not fit).
    """
    from supernet.devices import resolve_device
    from supernet.files.initial_weights import load_initial_weights
    from supernet.networks.build import build_supernet

    target = resolve_device(device)
    data = checkpoint_data({}, data_root=data_root, dataset=dataset, transforms=transforms)
    supernet = build_supernet(
        model,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
    )
    load_initial_weights(supernet, path, flag="--supernet")
    supernet.to(target).eval()
    evaluation = evaluation_set(
        data, split=split, bn_images=bn_images or 1000, val_images=val_images
    )
    return supernet, evaluation


def fp_accuracy(supernet: Supernet, scoring: ImageSource) -> float:
    """Top-1 in percent at full precision with the weights' own BN statistics (nothing
    re-calibrated, nothing quantized)."""
    from supernet.evaluation.oracle import batches_top1

    was_training = supernet.training
    with supernet.using(None), torch.inference_mode():
        supernet.eval()
        accuracy = batches_top1(supernet, scoring.batches())
    supernet.train(was_training)
    return accuracy


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
    return SupernetOracle.from_sources(
        supernet,
        evaluation.scoring,
        evaluation.calibration,
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
            raise InputError(f"{value} bits is not a weight and activation bit width of the space")
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
    full_precision = oracle.score(None)
    rows["FP32"] = {str(form): full_precision for form in chosen_forms}
    if progress is not None:
        progress(total, total)
    return pd.DataFrame.from_dict(rows, orient="index")
