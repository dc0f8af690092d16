"""eqsearch: elastic quantization supernets and NSGA-II mixed-precision search."""

from eqsearch.costs import (
    activation_compression,
    average_activation_bits,
    average_weight_bits,
    bitops,
    cost_table,
    flops,
    macs,
    model_size_bytes,
    parameter_count,
    weight_compression,
)
from eqsearch.engines import nsga2
from eqsearch.pareto import ParetoFront
from eqsearch.problem import Constraint, Objective, SearchProblem
from eqsearch.space import (
    ALL_FORMS,
    FULL_PRECISION_BITS,
    ConfigBatch,
    ElasticSpace,
    GenomeLayout,
    Granularity,
    LayerChoice,
    LayerSpec,
    QuantForm,
    SubnetConfig,
)
from eqsearch.space.genes import ArchGene, Condition
from eqsearch.space.geometry import Dim, LayerGeometry
from eqsearch.space.spec import SpaceSpec

__all__ = [
    "ALL_FORMS",
    "FULL_PRECISION_BITS",
    "ArchGene",
    "Condition",
    "ConfigBatch",
    "Constraint",
    "Dim",
    "ElasticSpace",
    "GenomeLayout",
    "Granularity",
    "LayerChoice",
    "LayerGeometry",
    "LayerSpec",
    "Objective",
    "ParetoFront",
    "QuantForm",
    "SearchProblem",
    "SpaceSpec",
    "SubnetConfig",
    "activation_compression",
    "average_activation_bits",
    "average_weight_bits",
    "bitops",
    "cost_table",
    "flops",
    "macs",
    "model_size_bytes",
    "nsga2",
    "parameter_count",
    "weight_compression",
]
__version__ = "0.1.0"
