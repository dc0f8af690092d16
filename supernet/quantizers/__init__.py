"""Elastic quantizers and their registry by name."""

from __future__ import annotations

import torch

from eqsearch.errors import InputError
from supernet.quantizers.base import ElasticQuantizer, QuantizerSpec
from supernet.quantizers.lsq import LsqQuantizer
from supernet.quantizers.n2uq import N2uqQuantizer

QUANTIZERS: dict[str, type[ElasticQuantizer]] = {}


def register_quantizer(
    cls: type[ElasticQuantizer],
) -> type[ElasticQuantizer]:
    """Register a quantizer class under its ``name``."""
    if not cls.name:
        raise InputError("a quantizer class needs a non-empty name")
    QUANTIZERS[cls.name] = cls
    return cls


register_quantizer(LsqQuantizer)
register_quantizer(N2uqQuantizer)


def quantizer_class(name: str) -> type[ElasticQuantizer]:
    """The registered quantizer class called ``name``."""
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise InputError(
            f"unknown quantizer {name!r}; registered: {', '.join(sorted(QUANTIZERS))}"
        ) from None


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
    "quantizer_class",
    "register_quantizer",
]
