"""Elastic quantizers and their registry by name."""

from __future__ import annotations

import torch

from eqsearch.errors import InputError
from eqsearch.registry import UNKNOWN_REGISTERED, Registry
from supernet.quantizers.base import ElasticQuantizer, QuantizerSpec
from supernet.quantizers.lsq import LsqQuantizer
from supernet.quantizers.n2uq import N2uqQuantizer

QUANTIZERS: Registry[type[ElasticQuantizer]] = Registry("quantizer", unknown=UNKNOWN_REGISTERED)
"""Every quantizer class by its ``name``: ``"lsq"``, ``"n2uq"``."""


def register_quantizer(
    cls: type[ElasticQuantizer],
) -> type[ElasticQuantizer]:
    """Register a quantizer class under its ``name``."""
    if not cls.name:
        raise InputError("a quantizer class needs a non-empty name")
    return QUANTIZERS.add(cls.name, cls)


register_quantizer(LsqQuantizer)
register_quantizer(N2uqQuantizer)


def quantizer_class(name: str) -> type[ElasticQuantizer]:
    """The registered quantizer class called ``name``."""
    return QUANTIZERS.lookup(name)


def exportable_quantizers() -> tuple[str, ...]:
    """The names of the quantizers that export (whose class says it is :attr:`exportable`)."""
    return QUANTIZERS.names(lambda cls: cls.exportable)


def build_quantizer(weight: torch.Tensor, spec: QuantizerSpec) -> ElasticQuantizer:
    """A quantizer of ``spec.name`` for a layer with this weight."""
    return quantizer_class(spec.name)(weight, spec)


__all__ = [
    "QUANTIZERS",
    "ElasticQuantizer",
    "LsqQuantizer",
    "N2uqQuantizer",
    "QuantizerSpec",
    "build_quantizer",
    "exportable_quantizers",
    "quantizer_class",
    "register_quantizer",
]
