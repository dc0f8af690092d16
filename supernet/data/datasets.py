"""Datasets by name: embedded digits, local CIFAR-10 / ImageFolder roots, user dataset factories."""

from __future__ import annotations

import torch

from eqsearch.errors import InputError
from eqsearch.factories import is_reference
from supernet.data.bundle import DataBundle
from supernet.data.cifar10 import cifar10_bundle
from supernet.data.embedded import embedded_bundle
from supernet.data.folders import imagefolder_bundle
from supernet.data.own_data import load_dataset_factory, number_of_classes
from supernet.data.spec import DATALOADERS, EMBEDDED, DataSpec
from supernet.data.streamed import transformed_bundle


def _factory_bundle(spec: DataSpec, seed: int, pin_memory: bool) -> DataBundle:
    train, test = load_dataset_factory(spec.name, spec.root)
    return transformed_bundle(
        spec, seed, train, test, number_of_classes(train, test), pin_memory, default="none"
    )


def build_data(spec: DataSpec, *, seed: int = 0, pin_memory: bool | None = None) -> DataBundle:
    """Load the dataset ``spec`` names; a missing or malformed root is a ValueError saying
    what was expected. ``seed`` fixes the training order (one permutation per epoch).

    ``pin_memory``: folder datasets' batches in page-locked memory, for non-blocking copies
    to a GPU (None: where CUDA is available).

    A dataset factory's module is imported and run: callers check first that the user named
    it (:func:`eqsearch.factories.check_named_by_file` for a name read from a file).
    """
    if spec.name == DATALOADERS:
        raise InputError(
            "this run was trained on DataLoaders given in Python; its data cannot be rebuilt "
            "from the checkpoint: name a dataset factory (--dataset package.module:function)"
        )
    if spec.name in EMBEDDED:
        return embedded_bundle(spec, seed)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    if spec.name == "cifar10":
        return cifar10_bundle(spec, seed, pin)
    if is_reference(spec.name):
        return _factory_bundle(spec, seed, pin)
    return imagefolder_bundle(spec, seed, pin)
