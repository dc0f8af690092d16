"""Supernet training: sandwich steps with GPG and WDR, joint or progressive bit schedules."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import InitVar, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_write_text
from eqsearch.locks import hold_directory
from eqsearch.settings_files import read_settings
from eqsearch.space import ElasticSpace, LayerChoice, SubnetConfig
from eqsearch.space.spec import SPACE_FLAGS, SpaceSpec
from supernet.data.bundle import DataBundle
from supernet.data.datasets import build_data
from supernet.data.images import ImageSource
from supernet.data.own_data import steps_per_epoch
from supernet.data.spec import (
    DataSpec,
    check_data_transforms,
    check_dataset_name,
    check_dataset_named_by_file,
)
from supernet.devices import resolve_device
from supernet.evaluation.oracle import measure_accuracy
from supernet.files.checkpoint import check_finite_weights, load_checkpoint, save_supernet
from supernet.files.initial_weights import load_initial_weights
from supernet.networks.elastic import Supernet, build_supernet
from supernet.networks.models import check_model_named_by_file, model_entry
from supernet.networks.quant_init import init_quantizers
from supernet.runtime import compiled_quantizers, keep_freed_memory, one_thread
from supernet.training.distributed import (
    Distributed,
    all_ranks_true,
    average_gradients,
    broadcast_state,
    distributed_context,
    shared_accuracy,
)
from supernet.training.losses import (
    GUIDANCE_MODES,
    TARGET_KURTOSIS,
    guided_loss,
    wdr_loss,
    wdr_weights,
)
from supernet.training.optim import build_optimizer, build_scheduler, check_optimizer_settings
from supernet.training.rng_state import restore_training_rng, training_rng_state
from supernet.training.train_loop import (
    LaggedLosses,
    autocast,
    backward,
    check_amp,
    gradient_scaler,
    optimizer_step,
)

SCHEDULES = ("joint", "progressive")
FORM_MODES = ("global", "per_layer")
CHECKPOINT_NAME = "supernet.pt"
FP_CHECKPOINT_NAME = "fp.pt"
LOG_NAME = "train_log.jsonl"
"""Images per forward when subnets are scored between epochs (it also sets the batches the BN
statistics are averaged over)."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left in place."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a supernet training run (JSON round-trips through ``to_dict``).

    Args:
        model, dataset, data_root, image_size: architecture and data (see
        ``supernet.data.datasets``;
            ``dataset`` may be a factory ``package.module:function``).
        transforms: the image transform preset, ``imagenet``, ``cifar`` or ``none`` (None:
            the dataset's own; see :class:`supernet.data.spec.DataSpec`).
        space: the elastic space (quantizer, bits, forms, first/last pinning, architecture
            choices; see :class:`SpaceSpec`). ``TrainConfig(w_bits=...)`` and the other
            SpaceSpec field names set single fields of it, also in ``replace`` and
            ``from_dict`` (older config files spell them at the top level).
        epochs: quantization-aware epochs of the supernet; 0 stores (and with ``start_eval``
            scores) the supernet as it starts from ``init``, ``pretrained`` or the FP
            pretraining, its quantizers initialised, without a supernet step.
        fp_epochs: full-precision pretraining epochs first (ignored with ``init``).
        init: a full-precision checkpoint (``fp.pt``) or a state_dict to start from (see
            :func:`supernet.files.initial_weights.load_initial_weights`).
        init_skip_head: leave the classifier out of ``init`` (weights for another number of
            classes).
        pretrained: start from torchvision weights in the local cache.
        batch_size, lr, weight_decay: images per step, the peak learning rate, weight decay
            (of weight matrices and kernels in the supernet phase).
        optimizer: ``adam`` (default), ``adamw`` or ``sgd`` (with ``momentum`` and
            ``nesterov``), for the FP pretraining and the supernet.
        warmup_epochs: supernet epochs of linear learning-rate warmup (from lr/steps to lr,
            step by step); the schedule starts after them.
        lr_schedule: ``cosine`` (per step, to 0 at the end), ``step`` (× ``lr_gamma`` every
            ``lr_step_epochs`` epochs) or ``constant``; see
            :func:`supernet.training.optim.lr_factor`.
        start_eval: score FP, the highest and the lowest uniform subnet before the first
            supernet epoch (a ``phase: start`` log entry, epoch 0).
        grad_clip: clip every gradient element to ±grad_clip (None: no clipping).
        schedule: ``joint`` (every bit width from the start, EQ-Net) or ``progressive``
            (OQAT bit inheritance: open lower bit widths stage by stage, each new one's steps
            initialised from the next higher one ×2).
        forms: draw each subnet's form once (``global``) or per layer (``per_layer``).
        guidance: ``gpg`` (H from labels, R from H, L from R), ``hard`` or ``smooth`` labels.
        gpg_weight: λ of GPG.
        label_smoothing: smoothing of the ``smooth`` guidance.
        random_subnets: R subnets per step.
        wdr_skew_weight, wdr_kurtosis_weight, target_kurtosis: WDR (0 weights turn it off).
        quant_init_images: calibration images for the quantizers' initial step sizes.
        bn_images: images for BN re-calibration before each evaluation.
        holdout: training images held out for scoring subnets.
        seed: seeds weights, data order and subnet draws.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        workers: DataLoader workers for folder datasets (None: one per usable core of this
            rank's share, at most 8; see ``supernet.data.spec.default_loader_workers``).
        amp: mixed precision of the training forward: ``none``, ``bf16`` or ``fp16``
            (autocast; fp16 with a gradient scaler). See the README for what runs in which
            precision.
        compile: compile the quantizers' element-wise work with ``torch.compile`` (the
            device path; see the README).
    """

    model: str = "lenet5"
    dataset: str = "mnist5k"
    data_root: str | None = None
    image_size: int | None = None
    transforms: str | None = None
    space: SpaceSpec = field(default_factory=SpaceSpec)
    epochs: int = 10
    fp_epochs: int = 0
    init: str | None = None
    init_skip_head: bool = False
    pretrained: bool = False
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    warmup_epochs: int = 0
    lr_schedule: str = "cosine"
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    start_eval: bool = True
    schedule: str = "joint"
    forms: str = "global"
    guidance: str = "gpg"
    gpg_weight: float = 0.5
    label_smoothing: float = 0.1
    random_subnets: int = 1
    wdr_skew_weight: float = 1.0
    wdr_kurtosis_weight: float = 0.015
    target_kurtosis: float = TARGET_KURTOSIS
    quant_init_images: int = 256
    bn_images: int = 1000
    holdout: int = 2000
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    amp: str = "none"
    compile: bool = False

    quantizer: InitVar[str | None] = None
    w_bits: InitVar[tuple[int, ...] | None] = None
    a_bits: InitVar[tuple[int, ...] | None] = None
    granularities: InitVar[tuple[str, ...] | None] = None
    w_symmetries: InitVar[tuple[bool, ...] | None] = None
    a_symmetries: InitVar[tuple[bool, ...] | None] = None
    first_last: InitVar[str | None] = None

    def __post_init__(
        self,
        quantizer: str | None,
        w_bits: tuple[int, ...] | None,
        a_bits: tuple[int, ...] | None,
        granularities: tuple[str, ...] | None,
        w_symmetries: tuple[bool, ...] | None,
        a_symmetries: tuple[bool, ...] | None,
        first_last: str | None,
    ) -> None:
        space = self.space if isinstance(self.space, SpaceSpec) else SpaceSpec.from_dict(self.space)
        single = {
            "quantizer": quantizer,
            "w_bits": w_bits,
            "a_bits": a_bits,
            "granularities": granularities,
            "w_symmetries": w_symmetries,
            "a_symmetries": a_symmetries,
            "first_last": first_last,
        }
        changes: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in single.items()
            if value is not None
        }
        object.__setattr__(self, "space", replace(space, **changes) if changes else space)
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{item.name} must be a finite number; got {value}")
        model_entry(self.model)
        check_dataset_name(self.dataset)
        require_positive_integers(self, ("batch_size", "quant_init_images", "bn_images", "holdout"))
        for name in ("epochs", "fp_epochs", "workers", "seed"):
            value = getattr(self, name)
            if name == "workers" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be a non-negative integer; got {value!r}")
        if self.epochs == 0 and not (self.init or self.pretrained or self.fp_epochs > 0):
            raise InputError(
                "epochs 0 trains no supernet: it scores and stores a start (init, pretrained "
                "or fp_epochs); give one of them or epochs >= 1"
            )
        if not isinstance(self.init_skip_head, bool):
            raise InputError(f"init_skip_head must be true or false; got {self.init_skip_head!r}")
        if self.init_skip_head and not self.init:
            raise InputError("init_skip_head leaves the classifier out of init; give init too")
        if self.seed > 2**63 - 1:
            raise InputError(f"seed must be in 0..2**63-1; got {self.seed}")
        if self.image_size is not None and (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or not 8 <= self.image_size <= 4096
        ):
            raise InputError(
                f"image_size must be None or an integer in 8..4096; got {self.image_size!r}"
            )
        if not self.random_subnets >= 0:
            raise InputError(f"random_subnets must be >= 0; got {self.random_subnets}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0; got {self.lr}")
        if self.weight_decay < 0:
            raise InputError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InputError(f"grad_clip must be > 0 or None; got {self.grad_clip}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.forms not in FORM_MODES:
            raise InputError(f"forms must be one of {FORM_MODES}; got {self.forms!r}")
        if self.guidance not in GUIDANCE_MODES:
            raise InputError(f"guidance must be one of {GUIDANCE_MODES}; got {self.guidance!r}")
        if not 0.0 <= self.gpg_weight <= 1.0:
            raise InputError(f"gpg_weight must be in [0, 1]; got {self.gpg_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        for name in ("wdr_skew_weight", "wdr_kurtosis_weight", "target_kurtosis"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.device != "auto" and not (
            self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")
        ):
            raise InputError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        check_amp(self.amp)
        if not isinstance(self.compile, bool):
            raise InputError(f"compile must be true or false; got {self.compile!r}")
        if not isinstance(self.start_eval, bool):
            raise InputError(f"start_eval must be true or false; got {self.start_eval!r}")
        check_optimizer_settings(
            optimizer=self.optimizer,
            momentum=self.momentum,
            nesterov=self.nesterov,
            warmup_epochs=self.warmup_epochs,
            lr_schedule=self.lr_schedule,
            lr_step_epochs=self.lr_step_epochs,
            lr_gamma=self.lr_gamma,
            epochs=self.epochs,
        )
        check_data_transforms(self.dataset, self.transforms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples as lists; the space as its own dict under ``space``)."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = list(value) if isinstance(value, tuple) else value
        data["space"] = self.space.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "a train config") -> TrainConfig:
        """Build from a dict read from ``source`` (a file); unknown keys are an error naming
        them. Older files spell the space's fields at the top level; they are read into
        ``space``. A model factory it names must have been named by the user too
        (:func:`supernet.networks.models.check_model_named_by_file`)."""
        if "model" in data:
            check_model_named_by_file(data["model"], source=source)
        if "dataset" in data:
            check_dataset_named_by_file(data["dataset"], source=source)
        legacy = set(SPACE_FLAGS.values())
        known = {f.name for f in fields(cls)} | legacy
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if isinstance(values.get("space"), dict):
            values["space"] = SpaceSpec.from_dict(values["space"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a settings file: JSON (as :meth:`to_json` writes it, or the tuning study), or
        YAML where the name ends in ``.yaml``/``.yml`` (the same keys; read safely and as
        strictly as JSON, see :func:`eqsearch.settings_files.read_settings`).

        Raises:
            InputError: the file is missing, too large, not a JSON object / YAML mapping, or
                holds settings that are not valid (the message names the file and the setting).
        """
        data = read_settings(path, limit=1 << 20, what="train config")
        if not isinstance(data, dict):
            raise InputError(f"train config {path} must hold a JSON object or a YAML mapping")
        try:
            return cls.from_dict(data, source="this file")
        except (TypeError, ValueError) as error:
            raise InputError(f"train config {path}: {error}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a JSON file written by :meth:`to_json` (:meth:`from_file` reads YAML too)."""
        return cls.from_file(path)

    def to_json(self, path: str | Path) -> None:
        """Write the config as indented JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def data_spec(self) -> DataSpec:
        """The :class:`DataSpec` of this run."""
        return DataSpec(
            name=self.dataset,
            root=self.data_root,
            batch_size=self.batch_size,
            holdout=self.holdout,
            image_size=self.image_size,
            workers=self.workers,
            transforms=self.transforms,
        )


# The space's fields read through to ``space`` (``config.w_bits`` is ``config.space.w_bits``);
# as init-only variables they would otherwise read as their default, None.
def _space_field(name: str) -> property:
    def read(self: TrainConfig) -> Any:
        return getattr(self.space, name)

    return property(read, doc=f"``space.{name}``")


for _name in SPACE_FLAGS.values():
    setattr(TrainConfig, _name, _space_field(_name))


@dataclass
class EpochReport:
    """What an ``on_epoch`` callback sees after a supernet epoch."""

    entry: dict[str, Any]
    supernet: Supernet
    data: DataBundle
    epoch: int


@dataclass
class TrainResult:
    """What :func:`train_supernet` returns."""

    supernet: Supernet
    history: list[dict[str, Any]]
    checkpoint: Path | None
    data: DataBundle


# -- subnet draws -------------------------------------------------------------------------


def open_bit_widths(config: TrainConfig, space: ElasticSpace, epoch: int) -> tuple[int, ...]:
    """Weight/activation bit widths open at ``epoch``: all (joint) or a growing suffix
    of the highest ones (progressive: one more bit width per stage, stages of equal length)."""
    bits = sorted(set(space.w_bits) | set(space.a_bits), reverse=True)
    if config.schedule == "joint":
        return tuple(sorted(bits))
    stage_length = max(1, config.epochs // len(bits))
    stage = min(len(bits) - 1, epoch // stage_length)
    return tuple(sorted(bits[: stage + 1]))


def draw_sandwich(
    space: ElasticSpace,
    rng: np.random.Generator,
    open_bits: Sequence[int],
    *,
    forms: str = "global",
    random_subnets: int = 1,
) -> list[SubnetConfig]:
    """The subnets of one step: highest bits (H), ``random_subnets`` random ones (R), lowest
    bits (L), each with its own randomly drawn form(s).

    In a joint space H is also the largest architecture, L the smallest and every R a random
    one (each gene uniform over its values, drawn after the bits; the choices of the layers
    it switches off are dropped: :meth:`ElasticSpace.canonical`). A space without
    architecture genes draws exactly as before (the same configs for the same generator).
    """
    w_open = [b for b in space.w_bits if b in open_bits] or [space.w_bits[-1]]
    a_open = [b for b in space.a_bits if b in open_bits] or [space.a_bits[-1]]
    space_forms = space.forms

    def draw(w_choice: Callable[[], int], a_choice: Callable[[], int], arch: str) -> SubnetConfig:
        global_form = space_forms[int(rng.integers(len(space_forms)))]
        choices = []
        for layer in space.layers:
            form = (
                space_forms[int(rng.integers(len(space_forms)))]
                if forms == "per_layer"
                else global_form
            )
            bits = layer.pinned or (w_choice(), a_choice())
            choices.append(LayerChoice(bits[0], bits[1], form))
        if not space.genes:
            return SubnetConfig(tuple(choices))
        if arch == "random":
            indices = [int(rng.integers(len(gene.values))) for gene in space.genes]
        else:
            indices = [0 if arch == "smallest" else len(g.values) - 1 for g in space.genes]
        values = {gene.name: gene.values[i] for gene, i in zip(space.genes, indices, strict=True)}
        return space.canonical(SubnetConfig(tuple(choices), tuple(values.items())))

    def random_w() -> int:
        return w_open[int(rng.integers(len(w_open)))]

    def random_a() -> int:
        return a_open[int(rng.integers(len(a_open)))]

    high = draw(lambda: w_open[-1], lambda: a_open[-1], "largest")
    randoms = [draw(random_w, random_a, "random") for _ in range(random_subnets)]
    low = draw(lambda: w_open[0], lambda: a_open[0], "smallest")
    return [high, *randoms, low]


def reorder_channels(supernet: Supernet) -> bool:
    """Sort an elastic-architecture model's channels by importance (OFA), where it can: the
    widest subnet is unchanged, every narrower width keeps the most important channels.
    Returns whether the model did. Run on trained full-precision weights, before the
    quantizers are initialised (their per-channel entries are not permuted)."""
    reorder = getattr(supernet.model, "reorder_channels", None)
    if reorder is None:
        return False
    reorder()
    return True


# -- the loop -----------------------------------------------------------------------------


def _parameter_groups(supernet: Supernet, weight_decay: float) -> list[dict[str, Any]]:
    decayed, quantizer, other = [], [], []
    for name, parameter in supernet.named_parameters():
        if ".quantizer." in name:
            quantizer.append(parameter)
        elif parameter.ndim > 1:
            decayed.append(parameter)
        else:
            other.append(parameter)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
        {"params": quantizer, "weight_decay": 0.0},
    ]


class _Progress:
    """Rich progress bars on the main process, nothing elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        if not self.enabled:
            yield self
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ) as progress:
            self._progress = progress
            yield self
            self._progress = None

    def add(self, description: str, total: int) -> Any:
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total, status="")

    def update(self, task: Any, **kwargs: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, **kwargs)

    def remove(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)

    def note(self, text: str) -> None:
        """Print a line above the bars (nothing without them)."""
        if self._progress is not None:
            self._progress.console.print(text)


def _check_finite(
    values: dict[str, torch.Tensor],
    epoch: int,
    step: int,
    dist: Distributed | None = None,
    kept: str = "no checkpoint of this run had been written",
) -> None:
    """Raise :class:`TrainingDiverged` when a loss on any rank is not finite.

    The check stays on the losses' device until one read of the answer; every rank must
    stop together, or the others would wait in the next all-reduce forever.
    """
    finite = torch.isfinite(torch.cat([value.detach().reshape(-1) for value in values.values()]))
    if all_ranks_true(finite.all(), dist or Distributed(device=finite.device)):
        return
    bad = {name: float(value) for name, value in values.items() if not torch.isfinite(value).all()}
    name, value = next(iter(bad.items())) if bad else ("on another rank", float("nan"))
    raise TrainingDiverged(
        f"loss {name} became {value} at epoch {epoch + 1}, step {step + 1}; "
        f"training stopped: {kept} (try a lower --lr)"
    )


def _optimizer_and_schedule(
    config: TrainConfig,
    parameters: Any,
    data: DataBundle,
    dist: Distributed,
    *,
    weight_decay: float,
    epochs: int,
    warmup_epochs: int = 0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The configured optimizer over ``parameters`` and its per-step learning-rate schedule
    over ``epochs`` epochs of this rank's batches."""
    optimizer = build_optimizer(
        config.optimizer,
        parameters,
        lr=config.lr,
        weight_decay=weight_decay,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    scheduler = build_scheduler(
        optimizer,
        config.lr_schedule,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch(data.train, config.batch_size, dist.world_size),
        warmup_epochs=warmup_epochs,
        step_epochs=config.lr_step_epochs,
        gamma=config.lr_gamma,
    )
    return optimizer, scheduler


def _fp_pretrain(
    supernet: Supernet,
    data: DataBundle,
    config: TrainConfig,
    device: torch.device,
    dist: Distributed,
    progress: _Progress,
    stored: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Plain cross-entropy training of the full-precision model for ``fp_epochs``.

    ``save`` is called after every epoch with the fields of an ``fp.pt`` checkpoint (the
    optimizer state while epochs remain); ``stored`` is such a checkpoint to continue from
    (its weights are loaded already). Returns the FP history, including the stored part.
    """
    supernet.set_subnet(None)
    parameters = [p for n, p in supernet.named_parameters() if ".quantizer." not in n]
    optimizer, scheduler = _optimizer_and_schedule(
        config, parameters, data, dist, weight_decay=config.weight_decay, epochs=config.fp_epochs
    )
    history: list[dict[str, Any]] = []
    first_epoch = 0
    if stored is not None:
        history = [entry for entry in stored.get("history", []) if entry.get("phase") == "fp"]
        first_epoch = int(stored.get("fp_epoch", config.fp_epochs))
        restore_training_rng(stored, device)
        if first_epoch < config.fp_epochs:
            optimizer.load_state_dict(stored["optimizer"])
            scheduler.load_state_dict(stored["scheduler"])
    calibration = data.calibration_source(config.bn_images)
    task = progress.add("FP pretraining", config.fp_epochs)
    progress.update(task, completed=first_epoch)
    for epoch in range(first_epoch, config.fp_epochs):
        supernet.train()
        start = time.perf_counter()
        total, batches = 0.0, 0
        for step, (images, labels) in enumerate(
            data.train.batches(epoch, dist.rank, dist.world_size)
        ):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(supernet(images), labels)
            _check_finite(
                {"fp_cross_entropy": loss.detach()},
                epoch,
                step,
                dist,
                f"the fp.pt of pretraining epoch {epoch} is kept"
                if save is not None and epoch > 0
                else "no checkpoint of this run had been written",
            )
            loss.backward()
            if dist.world_size > 1:
                average_gradients(parameters, dist)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_value_(parameters, config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            batches += 1
        if dist.world_size > 1:
            broadcast_state(supernet)
        accuracy = _epoch_accuracy(supernet, None, data.holdout, calibration, dist)
        history.append(
            {
                "phase": "fp",
                "epoch": epoch + 1,
                "loss": total / max(1, batches),
                "acc_fp": accuracy,
                "seconds": time.perf_counter() - start,
            }
        )
        progress.update(task, advance=1, status=f"FP acc {accuracy:.2f}%")
        if save is not None:
            finished = epoch + 1 == config.fp_epochs
            fields: dict[str, Any] = {
                "history": history,
                "fp_epoch": epoch + 1,
                "complete": finished,
                **training_rng_state(device),
            }
            if not finished:  # a finished fp.pt needs no optimizer state: keep it small
                fields["optimizer"] = optimizer.state_dict()
                fields["scheduler"] = scheduler.state_dict()
            save(fields)
    progress.remove(task)
    return history


def _kept_message(out: Path | None, epoch: int, dist: Distributed, pretrained: bool) -> str:
    """What a divergence in supernet epoch ``epoch`` leaves on disk, in words."""
    if out is None or not dist.is_main:
        return "nothing is saved by this process"
    if epoch > 0:
        return f"the checkpoint of epoch {epoch} is kept"
    if pretrained:
        return "fp.pt of the finished pretraining is kept; no supernet epoch was saved"
    return "no checkpoint of this run had been written"


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(entry) + "\n" for entry in history))


def _stored_run(
    out: Path, config: TrainConfig, resume: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What a run in ``out`` left: (its supernet checkpoint, its FP checkpoint), each None.

    Without ``resume`` a run directory holding either is refused; with it, the newest is
    returned (a supernet checkpoint wins) after checking its settings equal ``config``. A
    training log that no run in ``out`` wrote is never replaced.
    """
    checkpoint_path = out / CHECKPOINT_NAME
    fp_path = out / FP_CHECKPOINT_NAME
    log_path = out / LOG_NAME
    if log_path.exists() and not checkpoint_path.exists() and not fp_path.exists():
        raise InputError(
            f"{log_path} exists, but {out} holds no run of eqsearch train ({CHECKPOINT_NAME} "
            "or fp.pt); not replacing it: choose another --out"
        )
    if not resume:
        if checkpoint_path.exists():
            raise InputError(
                f"{checkpoint_path} exists; pass --resume to continue it, --force to start "
                "over, or choose another --out"
            )
        if fp_path.exists() and not config.init and config.fp_epochs > 0:
            raise InputError(
                f"{fp_path} holds the pretraining of a run that stopped before its first "
                "supernet epoch; pass --resume to continue from it or choose another --out"
            )
        return None, None
    path = checkpoint_path if checkpoint_path.exists() else fp_path
    if not path.exists():
        raise InputError(f"nothing to resume: {out} holds neither {CHECKPOINT_NAME} nor fp.pt")
    stored = load_checkpoint(path)
    stored_config = stored_train_config(stored, path)
    if replace(stored_config, device=config.device) != config:
        raise InputError(
            f"--resume continues {path} with its stored settings; the given settings differ"
        )
    if path == checkpoint_path:
        missing = [key for key in _RESUME_KEYS if key not in stored]
        if missing or stored.get("kind") != "supernet":
            raise InputError(
                f"{path} cannot be resumed: it lacks {', '.join(missing) or 'its kind'} "
                "(it was not written by eqsearch train)"
            )
        return stored, None
    if stored.get("kind") != "fp" or "torch_rng" not in stored:
        raise InputError(f"{path} is not the pretraining checkpoint of an eqsearch train run")
    return None, stored


_RESUME_KEYS = ("optimizer", "scheduler", "torch_rng", "epoch", "train_config")


def previous_run_files(out_dir: str | Path) -> list[Path]:
    """The files of the ``eqsearch train`` run in ``out_dir`` that a new run (``--force``)
    replaces: its checkpoints and its log.

    Raises:
        InputError: a file at a checkpoint's name that ``eqsearch train`` did not write (no
            training settings recorded in it), or a log beside no checkpoint.
    """
    out = Path(out_dir)
    found = [out / name for name in (CHECKPOINT_NAME, FP_CHECKPOINT_NAME) if (out / name).exists()]
    for path in found:
        stored_train_config(load_checkpoint(path), path)
    log = out / LOG_NAME
    if log.exists():
        if not found:
            raise InputError(f"{log} exists, but {out} holds no run of eqsearch train")
        found.append(log)
    return found


def stored_train_config(checkpoint: dict[str, Any], path: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint was trained with.

    Raises:
        InputError: the checkpoint has none or a malformed one.
    """
    data = checkpoint.get("train_config")
    if not isinstance(data, dict):
        raise InputError(f"{path} records no training settings (not written by eqsearch train)")
    if "model" in data:
        check_model_named_by_file(data["model"], source=str(path))
    try:
        return TrainConfig.from_dict(data, source=str(path))
    except (TypeError, ValueError) as error:
        raise InputError(f"{path} records malformed training settings ({error})") from None


def resumable_checkpoint(out_dir: str | Path) -> Path:
    """The checkpoint ``train --resume`` continues in ``out_dir``: ``supernet.pt``, or the
    ``fp.pt`` of a run that stopped before its first supernet epoch.

    Raises:
        InputError: there is neither.
    """
    out = Path(out_dir)
    for name in (CHECKPOINT_NAME, FP_CHECKPOINT_NAME):
        if (out / name).exists():
            return out / name
    raise InputError(f"nothing to resume: {out} holds neither {CHECKPOINT_NAME} nor fp.pt")


def _load_state(supernet: Supernet, stored: dict[str, Any], path: Path | None) -> None:
    """Load a checkpoint's weights, refusing wrong shapes and non-finite values in one line."""
    state = stored["state_dict"]
    try:
        supernet.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: the weights do not fit the architecture ({first})") from None
    check_finite_weights(state, path or "the checkpoint")


def _stage_openings(config: TrainConfig, space: ElasticSpace, epoch: int) -> list[tuple[int, int]]:
    """(from_bits, to_bits) inheritances that open at the start of ``epoch``."""
    if config.schedule != "progressive" or epoch == 0:
        return []
    now = open_bit_widths(config, space, epoch)
    before = open_bit_widths(config, space, epoch - 1)
    return [(min(before), bits) for bits in sorted(set(now) - set(before), reverse=True)]


def train_supernet(
    config: TrainConfig,
    out_dir: str | Path | None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochReport], None] | None = None,
    stop_after: int | None = None,
    force: bool = False,
    supernet: Supernet | None = None,
    data: DataBundle | None = None,
) -> TrainResult:
    """Train an elastic supernet and write ``out_dir/supernet.pt`` after every epoch.

    Args:
        config: the run's settings.
        out_dir: where ``supernet.pt``, ``fp.pt`` and ``train_log.jsonl`` go (None: keep
            nothing on disk, e.g. for tuning trials).
        resume: continue the run stored in ``out_dir/supernet.pt`` (weights, optimizer,
            schedule, RNG state and epoch restored exactly).
        progress: show rich progress bars (main process only).
        on_epoch: called after each supernet epoch with an :class:`EpochReport` (the log
            entry, the supernet, the data), before the checkpoint is written; it may add
            values to the entry (they are logged) or raise to stop (e.g. Optuna pruning).
        stop_after: return after this many epochs of this call (the checkpoint can be resumed).
        force: start a new run over the ``eqsearch train`` run in ``out_dir`` (its files are
            removed once the data and the model are built; see :func:`previous_run_files`).
        supernet: train this supernet instead of building ``config.model`` (its space is
            its own; ``config.model`` should name what rebuilds it, for checkpoints).
        data: train on this data instead of loading ``config.dataset`` (e.g.
            :func:`supernet.training.fit.loader_data`).

    While it runs, ``out_dir`` is locked (see ``eqsearch.locks.hold_directory``): a second
    run into it is refused at once.

    Raises:
        ValueError: bad settings, data or files (existing checkpoint without ``resume``).
        TrainingDiverged: a loss became NaN/inf (the previous epoch's checkpoint is kept).
    """
    # A joint (elastic-architecture) model runs hundreds of small ops per step: on CPU each
    # op split over threads waits at a barrier for a busy core (a sandwich step of
    # oqa_mbv3_tiny on 8×8 digits: 140 ms on one thread, 2.1 s on two, on the loaded 2-core
    # machine; see supernet.runtime.one_thread).
    joint_on_cpu = model_entry(config.model).joint and resolve_device(config.device).type == "cpu"
    main_process = distributed_context().is_main
    with (
        hold_directory(out_dir) if out_dir is not None and main_process else nullcontext(),
        one_thread() if joint_on_cpu else nullcontext(),
        compiled_quantizers(config.compile),
    ):
        return _train_supernet(
            config,
            out_dir,
            resume=resume,
            progress=progress,
            on_epoch=on_epoch,
            stop_after=stop_after,
            force=force,
            given_supernet=supernet,
            given_data=data,
        )


def _train_supernet(
    config: TrainConfig,
    out_dir: str | Path | None,
    *,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[EpochReport], None] | None,
    stop_after: int | None,
    force: bool,
    given_supernet: Supernet | None = None,
    given_data: DataBundle | None = None,
) -> TrainResult:
    device = resolve_device(config.device)  # cuda:<LOCAL_RANK> under torchrun
    dist = distributed_context(device)
    keep_freed_memory()
    out = Path(out_dir) if out_dir is not None else None
    checkpoint_path = out / CHECKPOINT_NAME if out is not None else None
    stored: dict[str, Any] | None = None
    stored_fp: dict[str, Any] | None = None
    replaced: list[Path] = []
    if out is not None and force and not resume:
        replaced = previous_run_files(out) if dist.is_main else []
    elif out is not None:
        stored, stored_fp = _stored_run(out, config, resume)

    torch.manual_seed(config.seed)  # weight init and dropout draw from torch's global RNG
    data = build_data(config.data_spec(), seed=config.seed) if given_data is None else given_data
    if given_supernet is None:
        given_supernet = build_supernet(
            config.model,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            image_size=data.image_size,
            space=config.space,
            pretrained=config.pretrained,
        )
    supernet = given_supernet.to(device)
    space = supernet.space
    reporter = _Progress(progress and dist.is_main)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    optimizer, scheduler = _optimizer_and_schedule(
        config,
        _parameter_groups(supernet, config.weight_decay),
        data,
        dist,
        weight_decay=0.0,  # each group sets its own
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
    )
    for path in replaced:
        path.unlink()
    with reporter.running():
        if stored is not None:
            _load_state(supernet, stored, checkpoint_path)
            optimizer.load_state_dict(stored["optimizer"])
            scheduler.load_state_dict(stored["scheduler"])
            restore_training_rng(stored, device)
            history = list(stored.get("history", []))
            start_epoch = int(stored["epoch"])
        else:
            if dist.world_size > 1:
                broadcast_state(supernet)
            if config.init:
                load_initial_weights(supernet, config.init, skip_head=config.init_skip_head)
            elif config.fp_epochs > 0:
                save_fp = None
                if out is not None and dist.is_main:

                    def save_fp(fields: dict[str, Any]) -> None:
                        save_supernet(
                            out / FP_CHECKPOINT_NAME,
                            supernet,
                            kind="fp",
                            train_config=config.to_dict(),
                            data=config.data_spec().to_dict(),
                            **fields,
                        )

                if stored_fp is not None:
                    _load_state(supernet, stored_fp, out / FP_CHECKPOINT_NAME if out else None)
                history += _fp_pretrain(
                    supernet, data, config, device, dist, reporter, stored_fp, save_fp
                )
            if config.fp_epochs > 0 or config.init:
                reorder_channels(supernet)
            init_quantizers(supernet, data.calibration_images(config.quant_init_images))
        calibration = data.calibration_source(config.bn_images)
        if stored is None and config.start_eval:
            start = _start_entry(supernet, data.holdout, calibration, dist)
            history.append(start)
            reporter.note(
                "before training: "
                + "  ".join(f"{name} {value:.2f}%" for name, value in start_accuracies(start))
            )
        parameters = [p for p in supernet.parameters()]
        quantized_weights = wdr_weights(supernet)
        scaler = gradient_scaler(device, config.amp)
        if scaler is not None and stored is not None and "grad_scaler" in stored:
            scaler.load_state_dict(stored["grad_scaler"])

        def save_checkpoint(epoch: int) -> None:
            """``supernet.pt`` and the log after ``epoch`` supernet epochs (main process)."""
            assert out is not None and checkpoint_path is not None
            save_supernet(
                checkpoint_path,
                supernet,
                kind="supernet",
                train_config=config.to_dict(),
                data=config.data_spec().to_dict(),
                history=history,
                epoch=epoch,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                **training_rng_state(device),
                **({} if scaler is None else {"grad_scaler": scaler.state_dict()}),
            )
            _write_log(out / LOG_NAME, history)

        if stored is None and config.epochs == 0 and out is not None and dist.is_main:
            save_checkpoint(0)  # the start as it is: evaluated, exported or searched like any
        epoch_task = reporter.add("supernet epochs", config.epochs)
        reporter.update(epoch_task, completed=start_epoch)
        last_epoch = config.epochs
        if stop_after is not None:
            last_epoch = min(last_epoch, start_epoch + stop_after)
        for epoch in range(start_epoch, last_epoch):
            for from_bits, to_bits in _stage_openings(config, space, epoch):
                for layer in supernet.elastic_layers().values():
                    layer.quantizer.inherit(from_bits, to_bits)
            open_bits = open_bit_widths(config, space, epoch)
            entry = _train_epoch(
                supernet,
                data,
                config,
                optimizer,
                scheduler,
                parameters,
                quantized_weights,
                open_bits,
                epoch,
                device,
                dist,
                reporter,
                _kept_message(
                    out,
                    epoch,
                    dist,
                    stored_fp is not None or (config.fp_epochs > 0 and not config.init),
                ),
                scaler,
            )
            if dist.world_size > 1:
                broadcast_state(supernet)
            form = space.forms[0]
            high_bits = (
                max(b for b in space.w_bits if b in open_bits),
                max(b for b in space.a_bits if b in open_bits),
            )
            low_bits = (
                min(b for b in space.w_bits if b in open_bits),
                min(b for b in space.a_bits if b in open_bits),
            )
            largest = space.uniform(*high_bits, form, arch="largest")
            smallest = space.uniform(*low_bits, form, arch="smallest")
            entry["acc_largest"] = _epoch_accuracy(
                supernet, largest, data.holdout, calibration, dist
            )
            entry["acc_smallest"] = _epoch_accuracy(
                supernet, smallest, data.holdout, calibration, dist
            )
            entry["open_bits"] = list(open_bits)
            if on_epoch is not None:
                on_epoch(EpochReport(entry, supernet, data, epoch))
            history.append(entry)
            if out is not None and dist.is_main:
                save_checkpoint(epoch + 1)
            reporter.update(
                epoch_task,
                advance=1,
                status=f"W{high_bits[0]}A{high_bits[1]} {entry['acc_largest']:.2f}%  "
                f"W{low_bits[0]}A{low_bits[1]} {entry['acc_smallest']:.2f}%",
            )
            if dist.world_size > 1:
                torch.distributed.barrier()
    supernet.set_subnet(None)
    supernet.eval()
    return TrainResult(supernet, history, checkpoint_path, data)


def _start_entry(
    supernet: Supernet, holdout: ImageSource, calibration: ImageSource, dist: Distributed
) -> dict[str, Any]:
    """The epoch-0 log entry: held-out accuracy at full precision and of the space's highest
    and lowest uniform subnets (largest and smallest architecture), before any supernet step."""
    space = supernet.space
    form = space.forms[0]
    high = (max(space.w_bits), max(space.a_bits))
    low = (min(space.w_bits), min(space.a_bits))
    start = time.perf_counter()
    entry: dict[str, Any] = {"phase": "start", "epoch": 0}
    entry["acc_fp"] = _epoch_accuracy(supernet, None, holdout, calibration, dist)
    entry["acc_largest"] = _epoch_accuracy(
        supernet, space.uniform(*high, form, arch="largest"), holdout, calibration, dist
    )
    entry["acc_smallest"] = _epoch_accuracy(
        supernet, space.uniform(*low, form, arch="smallest"), holdout, calibration, dist
    )
    entry["bits_largest"] = list(high)
    entry["bits_smallest"] = list(low)
    entry["seconds"] = time.perf_counter() - start
    return entry


def start_accuracies(entry: dict[str, Any]) -> list[tuple[str, float]]:
    """``(label, accuracy)`` of an epoch-0 entry: ``FP``, ``W8A8``, ``W2A2`` (its bits)."""
    high, low = entry["bits_largest"], entry["bits_smallest"]
    return [
        ("FP", float(entry["acc_fp"])),
        (f"W{high[0]}A{high[1]}", float(entry["acc_largest"])),
        (f"W{low[0]}A{low[1]}", float(entry["acc_smallest"])),
    ]


def _epoch_accuracy(
    supernet: Supernet,
    subnet: SubnetConfig | None,
    holdout: ImageSource,
    calibration: ImageSource,
    dist: Distributed,
) -> float:
    """A subnet's held-out accuracy between epochs, the images shared out over the ranks
    (each re-calibrates BN on every calibration image, then scores its part: whole batches
    of the held-out source, the batches one process would score)."""

    def score(start: int, stop: int) -> float:
        part = holdout if (start, stop) == (0, len(holdout)) else holdout.subset(range(start, stop))
        return measure_accuracy(supernet, subnet, part, calibration)

    return shared_accuracy(score, len(holdout), dist, batch_size=holdout.batch_size)


def _subnet_step(
    supernet: Supernet,
    subnet: SubnetConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    config: TrainConfig,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (under ``config.amp``'s autocast) and backward of one subnet; returns (loss,
    logits), both detached.

    Backward runs right away so that each subnet's graph is freed before the next forward.
    """
    supernet.set_subnet(subnet)
    with autocast(images.device, config.amp):
        logits = supernet(images)
        loss = guided_loss(
            logits,
            labels,
            teacher,
            mode=config.guidance,
            weight=config.gpg_weight,
            smoothing=config.label_smoothing,
        )
    backward(loss, scaler)
    return loss.detach(), logits.detach()


def sandwich_step(
    supernet: Supernet,
    images: torch.Tensor,
    labels: torch.Tensor,
    subnets: Sequence[SubnetConfig],
    config: TrainConfig,
    quantized_weights: Sequence[torch.Tensor] = (),
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, torch.Tensor]:
    """Accumulate the gradients of one sandwich step (no optimizer step).

    ``subnets`` is ``[H, R_1, ..., R_k, L]`` (see :func:`draw_sandwich`): H learns from the
    labels, every R from H, L from the last R (or H without R); then the WDR terms of
    ``quantized_weights`` (none: WDR off). Every backward is scaled by ``scaler`` where one
    is given (float16 autocast). Returns every loss term, detached and unscaled; on the
    device path (:func:`supernet.runtime.host_path`) nothing in it waits for the device.
    """
    if len(subnets) < 2:
        raise InputError("a sandwich step needs at least the highest and the lowest subnet")
    losses: dict[str, torch.Tensor] = {}
    high, *randoms, low = subnets
    losses["high"], high_logits = _subnet_step(supernet, high, images, labels, None, config, scaler)
    teacher = high_logits
    for index, subnet in enumerate(randoms):
        losses[f"random{index}"], teacher = _subnet_step(
            supernet, subnet, images, labels, high_logits, config, scaler
        )
    if low != high:  # a space of one config (a static QAT baseline) trains it once
        losses["low"], _ = _subnet_step(supernet, low, images, labels, teacher, config, scaler)
    if quantized_weights:
        skew, kurtosis = wdr_loss(quantized_weights, target_kurtosis=config.target_kurtosis)
        backward(config.wdr_skew_weight * skew + config.wdr_kurtosis_weight * kurtosis, scaler)
        losses["wdr_skew"] = skew.detach()
        losses["wdr_kurtosis"] = kurtosis.detach()
    return losses


def _log_key(name: str) -> str:
    """The log entry a loss term of :func:`sandwich_step` is averaged into."""
    if name.startswith("random"):
        return "loss_random"
    return f"loss_{name}" if name in ("high", "low") else name


def _train_epoch(
    supernet: Supernet,
    data: DataBundle,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    parameters: list[nn.Parameter],
    quantized_weights: list[torch.Tensor],
    open_bits: Sequence[int],
    epoch: int,
    device: torch.device,
    dist: Distributed,
    reporter: _Progress,
    kept: str = "no checkpoint of this run had been written",
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    """One epoch of sandwich steps; returns the epoch's mean loss terms.

    ``kept`` says what a divergence leaves on disk (for its message). The loss terms are
    read back one step late and summed on the host (:class:`LaggedLosses`): a step reads one
    value (its finiteness flag), whatever the number of layers.
    """
    space = supernet.space
    supernet.train()
    losses_read = LaggedLosses.for_device(
        lambda terms, step: _check_finite(terms, epoch, step, dist, kept), device
    )
    start = time.perf_counter()
    use_wdr = (config.wdr_skew_weight > 0 or config.wdr_kurtosis_weight > 0) and quantized_weights
    step_task = reporter.add(
        f"epoch {epoch + 1}", steps_per_epoch(data.train, config.batch_size, dist.world_size)
    )
    for step, (images, labels) in enumerate(data.train.batches(epoch, dist.rank, dist.world_size)):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        # Subnet draws depend only on (seed, epoch, step): every rank draws the same ones and
        # a resumed run draws what the uninterrupted one would have.
        rng = np.random.default_rng([config.seed, epoch, step])
        subnets = draw_sandwich(
            space, rng, open_bits, forms=config.forms, random_subnets=config.random_subnets
        )
        optimizer.zero_grad(set_to_none=True)
        losses = sandwich_step(
            supernet,
            images,
            labels,
            subnets,
            config,
            quantized_weights if use_wdr else [],
            scaler,
        )
        losses_read.add(losses, step)  # checks the previous step's terms on the device path
        if dist.world_size > 1:
            average_gradients(parameters, dist)
        optimizer_step(optimizer, parameters, config.grad_clip, scaler)
        scheduler.step()
        reporter.update(step_task, advance=1)
    means = losses_read.means(_log_key)  # checks the last step's terms
    reporter.remove(step_task)
    supernet.set_subnet(None)
    entry: dict[str, Any] = {"phase": "supernet", "epoch": epoch + 1, **means}
    entry["lr"] = scheduler.get_last_lr()[0]
    entry["seconds"] = time.perf_counter() - start
    return entry
