"""Which genes and layers of a joint space a config switches on, and its canonical form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from eqsearch.errors import InputError
from eqsearch.space.arrays import IntArray
from eqsearch.space.configs import SubnetConfig, arch_choices
from eqsearch.space.genes import ArchGene, check_condition, check_gene_order, implies
from eqsearch.space.layers import LayerSpec

if TYPE_CHECKING:
    from eqsearch.space.elastic import ElasticSpace


def check_architecture(genes: tuple[ArchGene, ...], layers: tuple[LayerSpec, ...]) -> None:
    """Refuse genes out of order, conditions on unknown genes, geometry that follows a gene
    which can be off while its layer runs, and a joint space with no always-running layer."""
    positions = check_gene_order(genes)
    for layer in layers:
        where = f"layer {layer.name!r}"
        for condition in layer.active_if:
            check_condition(condition, genes, positions, where)
        if layer.geometry is None:
            continue
        for dim in layer.geometry.dims:
            if dim.gene is None:
                continue
            if dim.gene not in positions:
                raise InputError(
                    f"{where}: its geometry follows {dim.gene!r}, which is not an "
                    "architecture gene of the space"
                )
            gene = genes[positions[dim.gene]]
            dim.sizes_for(gene)
            if not implies(layer.active_if, gene.active_if, genes, positions):
                raise InputError(
                    f"{where}: its geometry follows {gene.name!r}, which can be inactive "
                    "while the layer runs (give the layer the gene's conditions)"
                )
    if genes and all(layer.active_if for layer in layers if layer.pinned is None):
        raise InputError("ElasticSpace needs at least one searched layer that always runs")


def arch_indices(space: ElasticSpace, arch: Mapping[str, int] | str | None = None) -> IntArray:
    """Canonical gene indices ``(genes,)`` of an architecture.

    ``arch`` is ``"largest"`` (None), ``"smallest"``, or a mapping of gene values; genes it
    does not name take their largest value, and genes that the others switch off are
    dropped (canonical index 0).
    """
    if arch is None or arch == "largest":
        indices = np.asarray([len(gene.values) - 1 for gene in space.genes], dtype=np.int64)
    elif arch == "smallest":
        indices = np.zeros(len(space.genes), dtype=np.int64)
    elif isinstance(arch, Mapping):
        unknown = sorted(set(arch) - set(space.gene_positions))
        if unknown:
            raise InputError(
                f"unknown architecture gene(s) {', '.join(unknown)}; the space has "
                f"{', '.join(space.gene_positions) or 'none'}"
            )
        indices = np.asarray(
            [
                gene.index(arch[gene.name]) if gene.name in arch else len(gene.values) - 1
                for gene in space.genes
            ],
            dtype=np.int64,
        )
    else:
        raise InputError(f"arch must be 'largest', 'smallest' or a mapping; got {arch!r}")
    canonical, _, _ = space.activity.evaluate(indices[None, :])
    result: IntArray = canonical[0]
    return result


def arch_of(space: ElasticSpace, config: SubnetConfig) -> tuple[dict[str, int], list[bool]]:
    """The config's architecture checked against the genes, and which layers run."""
    given = dict(config.arch)
    unknown = sorted(set(given) - set(space.gene_positions))
    if unknown:
        names = ", ".join(space.gene_positions) or "none"
        raise InputError(
            f"config names unknown architecture gene(s) {', '.join(unknown)}; the space has {names}"
        )
    active: dict[str, int] = {}
    for gene in space.genes:
        if all(condition.holds(active) for condition in gene.active_if):
            if gene.name not in given:
                raise InputError(f"config lacks the architecture gene {gene.name!r}")
            gene.index(given[gene.name])
            active[gene.name] = given[gene.name]
        elif gene.name in given:
            raise InputError(
                f"config sets {gene.name!r}, which its other genes switch off; a config "
                "leaves inactive genes out (ElasticSpace.canonical drops them)"
            )
    running = [all(c.holds(active) for c in layer.active_if) for layer in space.layers]
    return active, running


def canonical_config(space: ElasticSpace, config: SubnetConfig) -> SubnetConfig:
    """``config`` with the genes and layer choices its architecture switches off dropped
    (not yet validated).

    ``config.choices`` may hold one choice per layer of the space (those of layers that do
    not run are dropped) or one per running layer.
    """
    given = dict(config.arch)
    active: dict[str, int] = {}
    for gene in space.genes:
        if gene.name in given and all(c.holds(active) for c in gene.active_if):
            active[gene.name] = given[gene.name]
    choices = config.choices
    if len(choices) == space.n_layers:
        choices = tuple(
            choice
            for choice, layer in zip(choices, space.layers, strict=True)
            if all(c.holds(active) for c in layer.active_if)
        )
    return SubnetConfig(choices, arch_choices(active))
