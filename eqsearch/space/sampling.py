"""Random subnets of a space: every elastic layer's bits, the forms and the architecture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from eqsearch.errors import InputError
from eqsearch.space.arrays import FormsMode, IntArray
from eqsearch.space.batch import ConfigBatch
from eqsearch.space.forms import FORM_INDEX, QuantForm

if TYPE_CHECKING:
    from eqsearch.space.elastic import ElasticSpace


def sample_batch(
    space: ElasticSpace,
    rng: np.random.Generator | int,
    n: int,
    *,
    forms: FormsMode = "global",
    form: QuantForm | None = None,
) -> ConfigBatch:
    """``n`` subnets with every elastic layer's bits (and every architecture gene) uniform
    over the space; one form per subnet (``forms="global"``), one per layer (``"per_layer"``)
    or ``form`` fixed. The draws are a function of the generator's state alone."""
    generator = np.random.default_rng(rng)
    if n < 0:
        raise InputError(f"n must be >= 0; got {n}")
    w_bits = np.asarray(space.w_bits)[generator.integers(0, len(space.w_bits), (n, space.n_layers))]
    a_bits = np.asarray(space.a_bits)[generator.integers(0, len(space.a_bits), (n, space.n_layers))]
    if form is not None:
        form_index = np.full((n, space.n_layers), FORM_INDEX[space.check_form(form)])
    else:
        if forms not in ("global", "per_layer"):
            raise InputError(f"forms must be 'global' or 'per_layer'; got {forms!r}")
        space_forms = np.asarray([FORM_INDEX[f] for f in space.forms])
        shape = (n, 1) if forms == "global" else (n, space.n_layers)
        form_index = np.broadcast_to(
            space_forms[generator.integers(0, len(space_forms), shape)],
            (n, space.n_layers),
        )
    arch = random_arch(space, generator, n) if space.genes else None
    return ConfigBatch.from_arrays(space, w_bits, a_bits, form_index, arch=arch)


def random_arch(space: ElasticSpace, rng: np.random.Generator, n: int) -> IntArray:
    """``n`` architectures, each gene's index uniform over its values ``(n, genes)`` (not
    yet canonical)."""
    sizes = np.asarray([len(gene.values) for gene in space.genes], dtype=np.int64)
    result: IntArray = rng.integers(0, sizes, (n, len(space.genes)))
    return result
