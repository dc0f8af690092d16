"""The settings of a supernet training run: :class:`TrainConfig`, validated, read and written."""

from __future__ import annotations

import json
import math
from dataclasses import InitVar, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_write_text
from eqsearch.settings_files import read_settings
from eqsearch.space.spec import SPACE_FLAGS, SpaceSpec
from supernet.data.spec import (
    DataSpec,
    check_data_transforms,
    check_dataset_name,
    check_dataset_named_by_file,
)
from supernet.networks.models import check_model_named_by_file, model_entry
from supernet.training.amp import check_amp
from supernet.training.losses import GUIDANCE_MODES, TARGET_KURTOSIS
from supernet.training.optim import check_optimizer_settings

SCHEDULES = ("joint", "progressive")
FORM_MODES = ("global", "per_layer")


class _SpaceField:
    """A :class:`SpaceSpec` field that :class:`TrainConfig` takes as a constructor argument and
    reads through to its ``space``: ``config.w_bits`` is ``config.space.w_bits``.

    Read on the class it is None, which the dataclass takes as the argument's default (the
    space keeps its own value). ``dataclasses.replace`` reads it like a field: a ``replace``
    that gives a new ``space`` without these carries the old space's values over it.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.__doc__ = f"``space.{name}``"

    def __get__(self, instance: TrainConfig | None, owner: type) -> Any:
        return None if instance is None else getattr(instance.space, self.name)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a supernet training run (JSON round-trips through ``to_dict``).

    Args:
        model, dataset, data_root, image_size: architecture and data (see
        ``supernet.data.datasets``;
            ``dataset`` may be a factory ``package.module:function``).
        transforms: the image transform preset, ``imagenet``, ``cifar`` or ``none`` (None:
            the dataset's own; see :class:`supernet.data.datasets.DataSpec`).
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
            rank's share, at most 8; see ``supernet.data.datasets.default_loader_workers``).
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

    # The space's fields one by one (None: the space's own), read back through ``space``.
    quantizer: InitVar[str | None] = _SpaceField()
    w_bits: InitVar[tuple[int, ...] | None] = _SpaceField()
    a_bits: InitVar[tuple[int, ...] | None] = _SpaceField()
    granularities: InitVar[tuple[str, ...] | None] = _SpaceField()
    w_symmetries: InitVar[tuple[bool, ...] | None] = _SpaceField()
    a_symmetries: InitVar[tuple[bool, ...] | None] = _SpaceField()
    first_last: InitVar[str | None] = _SpaceField()

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
