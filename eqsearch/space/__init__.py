"""The elastic quantization space: forms, per-layer choices, subnets, batches and genomes."""

from __future__ import annotations

from eqsearch.space.arrays import ArchChoices, BoolArray, FloatArray, FormsMode, IntArray
from eqsearch.space.batch import ConfigBatch
from eqsearch.space.configs import SubnetConfig
from eqsearch.space.elastic import (
    JOINT_SPACE_VERSION,
    READABLE_VERSIONS,
    SPACE_VERSION,
    ElasticSpace,
)
from eqsearch.space.forms import (
    ALL_FORMS,
    FULL_PRECISION_BITS,
    MAX_BITS,
    MIN_BITS,
    Granularity,
    LayerChoice,
    QuantForm,
)
from eqsearch.space.genome import GenomeLayout
from eqsearch.space.layers import LAYER_KINDS, LayerSpec

__all__ = [
    "ALL_FORMS",
    "FULL_PRECISION_BITS",
    "JOINT_SPACE_VERSION",
    "LAYER_KINDS",
    "MAX_BITS",
    "MIN_BITS",
    "READABLE_VERSIONS",
    "SPACE_VERSION",
    "ArchChoices",
    "BoolArray",
    "ConfigBatch",
    "ElasticSpace",
    "FloatArray",
    "FormsMode",
    "GenomeLayout",
    "Granularity",
    "IntArray",
    "LayerChoice",
    "LayerSpec",
    "QuantForm",
    "SubnetConfig",
]
