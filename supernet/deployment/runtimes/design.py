"""Which subnets a latency table measures: layer roles, kernel classes, shape and class sweeps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from eqsearch.latency.kernels import KernelTable
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace, LayerChoice, SubnetConfig
from supernet.networks.elastic import Supernet


def layer_roles(supernet: Supernet) -> list[str]:
    """The probe role of every layer of the space (what kind of kernel it needs)."""
    modules = supernet.elastic_layers()
    space = supernet.space
    roles = []
    for index, spec in enumerate(space.layers):
        module = modules.get(spec.name)
        if spec.kind == "linear":
            roles.append("classifier" if index == space.n_layers - 1 else "linear")
            continue
        geometry = spec.geometry
        groups = getattr(module, "groups", 1)
        in_channels = getattr(module, "in_channels", 1)
        depthwise = (
            geometry.depthwise if geometry is not None else groups > 1 and groups == in_channels
        )
        kernel = getattr(module, "kernel_size", (1, 1))
        kernel_side = kernel[0] if isinstance(kernel, tuple) else int(kernel)
        positions = spec.n_inputs // max(1, in_channels)
        if depthwise:
            roles.append("depthwise")
        elif kernel_side == 1 and positions == 1:
            roles.append("se.reduce" if spec.out_channels < in_channels else "se.expand")
        elif kernel_side == 1:
            roles.append("pointwise")
        else:
            roles.append("dense")
    return roles


def class_mapping(
    space: ElasticSpace, roles: Sequence[str], kernels: KernelTable
) -> tuple[tuple[str, ...], dict[str, dict[tuple[int, int, str], int]]]:
    """Kernel-class labels and, per role, each reachable (w, a, form)'s class index."""
    classes: list[str] = []
    mapping: dict[str, dict[tuple[int, int, str], int]] = {}
    pairs = {(w, a) for w in space.w_bits for a in space.a_bits}
    pairs |= {layer.pinned for layer in space.layers if layer.pinned is not None}
    for role in sorted(set(roles)):
        entries: dict[tuple[int, int, str], int] = {}
        for w_bits, a_bits in sorted(pairs):
            for form in space.forms:
                label = kernels.class_label(role, form, w_bits, a_bits)
                if label not in classes:
                    classes.append(label)
                entries[(w_bits, a_bits, str(form))] = classes.index(label)
        mapping[role] = entries
    return tuple(classes), mapping


def shape_keys(space: ElasticSpace, configs: Sequence[SubnetConfig]) -> npt.NDArray[np.int64]:
    """``(n, layers, 3)``: each layer's (params, MACs, inputs); zeros where it does not run."""
    batch = configs if isinstance(configs, ConfigBatch) else space.batch(configs)
    return np.rint(np.stack([batch.params, batch.macs, batch.inputs], axis=2)).astype(np.int64)


def shape_sweep(
    space: ElasticSpace, choice: LayerChoice, rng: np.random.Generator, candidates: int
) -> list[SubnetConfig]:
    """Architectures that together run every layer at every shape it can take (all at one
    bit choice): the largest first, then greedily the random one covering most shapes not
    yet covered. Genes that only switch layers on or off stay at their largest value."""
    largest = space.uniform(choice.w_bits, choice.a_bits, choice.form)
    if not space.genes:
        return [largest]
    shaping = {gene for layer in space.layers if layer.geometry for gene in layer.geometry.genes}
    genes = space.genes
    top = np.array([len(gene.values) - 1 for gene in genes])
    wanted = _reachable_shapes(space, choice, rng, shaping)
    chosen = [largest]
    covered = _covered(shape_keys(space, chosen)[0])
    wanted -= covered
    for _ in range(200):
        if not wanted:
            break
        draws = np.where(
            np.array([gene.name in shaping for gene in genes])[None, :],
            rng.integers(0, 1 << 30, (candidates, len(genes))) % (top + 1)[None, :],
            top[None, :],
        )
        configs = _configs_of(space, choice, draws)
        keys = shape_keys(space, configs)
        gains = [len(_covered(row) & wanted) for row in keys]
        best = int(np.argmax(gains))
        if gains[best] == 0:
            break
        chosen.append(configs[best])
        wanted -= _covered(keys[best])
    return chosen


def _configs_of(
    space: ElasticSpace, choice: LayerChoice, arch: npt.NDArray[np.int64]
) -> ConfigBatch:
    """Canonical configs of gene-index rows, every layer at ``choice``."""
    shape = (len(arch), space.n_layers)
    return ConfigBatch.from_arrays(
        space,
        np.full(shape, choice.w_bits),
        np.full(shape, choice.a_bits),
        np.full(shape, ALL_FORMS.index(choice.form)),
        arch=arch,
    )


def _covered(keys: npt.NDArray[np.int64]) -> set[tuple[int, int, int, int]]:
    return {
        (layer, int(key[0]), int(key[1]), int(key[2]))
        for layer, key in enumerate(keys)
        if key[0] > 0
    }


def _reachable_shapes(
    space: ElasticSpace, choice: LayerChoice, rng: np.random.Generator, shaping: set[str]
) -> set[tuple[int, int, int, int]]:
    """Every (layer, shape) the space reaches, from each layer's own genes enumerated."""
    genes = space.genes
    top = np.array([len(gene.values) - 1 for gene in genes])
    rows = [top]
    for layer in space.layers:
        if layer.geometry is None:
            continue
        own = [i for i, gene in enumerate(genes) if gene.name in layer.geometry.genes]
        grids = np.meshgrid(*[np.arange(len(genes[i].values)) for i in own], indexing="ij")
        for combination in zip(*(grid.reshape(-1) for grid in grids), strict=True):
            row = top.copy()
            row[own] = combination
            rows.append(row)
    unique = np.unique(np.array(rows), axis=0)
    keys = shape_keys(space, _configs_of(space, choice, unique))
    reachable: set[tuple[int, int, int, int]] = set()
    for row in keys:
        reachable |= _covered(row)
    return reachable


def class_sweep(
    space: ElasticSpace, roles: Sequence[str], class_map: dict[str, dict[tuple[int, int, str], int]]
) -> list[SubnetConfig]:
    """Uniform choices of the largest architecture, one for each distinct assignment of
    kernel classes to the roles (every class of every role once at least)."""
    seen: set[tuple[int, ...]] = set()
    configs = []
    role_set = sorted(set(roles))
    for form in space.forms:
        for w_bits in sorted(space.w_bits, reverse=True):
            for a_bits in sorted(space.a_bits, reverse=True):
                signature = tuple(
                    class_map[role].get((w_bits, a_bits, str(form)), -1) for role in role_set
                )
                if signature in seen:
                    continue
                seen.add(signature)
                configs.append(space.uniform(w_bits, a_bits, form))
    return configs
