"""eqsearch: elastic quantization supernets and NSGA-II mixed-precision search."""

from eqsearch.costs import (
    activation_compression,
    average_activation_bits,
    average_weight_bits,
    bitops,
    cost_table,
    model_size_bytes,
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

__all__ = [
    "ALL_FORMS",
    "FULL_PRECISION_BITS",
    "ConfigBatch",
    "Constraint",
    "ElasticSpace",
    "GenomeLayout",
    "Granularity",
    "LayerChoice",
    "LayerSpec",
    "Objective",
    "ParetoFront",
    "QuantForm",
    "SearchProblem",
    "SubnetConfig",
    "activation_compression",
    "average_activation_bits",
    "average_weight_bits",
    "bitops",
    "cost_table",
    "model_size_bytes",
    "nsga2",
    "weight_compression",
]
__version__ = "0.1.0"
