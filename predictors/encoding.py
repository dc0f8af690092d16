"""Subnet configs as feature vectors: the conditional encoding of CQAP, vectorised."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space import ALL_FORMS, FULL_PRECISION_BITS, ConfigBatch, ElasticSpace, SubnetConfig

FeatureArray = npt.NDArray[np.float32]

FLAG_NAMES = ("per_channel", "w_symmetric", "a_symmetric")
"""The binary conditions of each layer, after its one-hot bit blocks."""


def features_per_layer(space: ElasticSpace) -> int:
    """Width of one elastic layer's block: one-hot weight bits, one-hot activation bits, flags."""
    return len(space.w_bits) + len(space.a_bits) + len(FLAG_NAMES)


def feature_count(space: ElasticSpace) -> int:
    """Length of the feature vector of a config of ``space``."""
    arch = sum(len(gene.values) for gene in space.genes)
    return len(space.elastic_indices) * features_per_layer(space) + arch


def feature_names(space: ElasticSpace) -> list[str]:
    """Names of the features, in column order (``"conv2.w4"``, ``"conv2.per_channel"``, ...)."""
    names: list[str] = []
    for index in space.elastic_indices:
        layer = space.layers[index].name
        names.extend(f"{layer}.w{bits}" for bits in space.w_bits)
        names.extend(f"{layer}.a{bits}" for bits in space.a_bits)
        names.extend(f"{layer}.{flag}" for flag in FLAG_NAMES)
    for gene in space.genes:
        names.extend(f"{gene.name}={value}" for value in gene.values)
    return names


@functools.lru_cache(maxsize=16)
def _layer_block_table(
    w_bits: tuple[int, ...], a_bits: tuple[int, ...]
) -> tuple[FeatureArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every possible block of one layer, and where bit widths sit in it.

    Row ``(w·(A+1) + a)·8 + f`` is the block of weight-bit index ``w``, activation-bit index
    ``a`` and form index ``f``; index ``W`` (``A``) stands for a layer that does not run, whose
    block is all zeros. The two lookups map a bit width (0..32) to its index.
    """
    n_w, n_a, n_forms = len(w_bits), len(a_bits), len(ALL_FORMS)
    width = n_w + n_a + len(FLAG_NAMES)
    table = np.zeros((n_w + 1, n_a + 1, n_forms, width), dtype=np.float32)
    for w in range(n_w):
        for a in range(n_a):
            for form_index, form in enumerate(ALL_FORMS):
                block = table[w, a, form_index]
                block[w] = 1.0
                block[n_w + a] = 1.0
                block[n_w + n_a :] = (form.per_channel, form.w_symmetric, form.a_symmetric)
    w_lookup = np.full(FULL_PRECISION_BITS + 1, n_w, dtype=np.int64)
    w_lookup[list(w_bits)] = np.arange(n_w)
    a_lookup = np.full(FULL_PRECISION_BITS + 1, n_a, dtype=np.int64)
    a_lookup[list(a_bits)] = np.arange(n_a)
    return table.reshape(-1, width), w_lookup, a_lookup


def encode_batch(batch: ConfigBatch) -> FeatureArray:
    """Features of a :class:`ConfigBatch` (read from its arrays; no per-config Python).

    Each layer's block is one row of a table of every possible block, picked by a code of its
    bits and form: one gather for the whole batch.
    """
    space = batch.space
    elastic = np.asarray(space.elastic_indices, dtype=np.int64)
    table, w_lookup, a_lookup = _layer_block_table(space.w_bits, space.a_bits)
    n_a = len(space.a_bits)
    code = w_lookup[batch.w_bits[:, elastic]] * (n_a + 1) + a_lookup[batch.a_bits[:, elastic]]
    code = code * len(ALL_FORMS) + batch.form_index[:, elastic]
    rows = np.take(table, code.reshape(-1), axis=0)
    features: FeatureArray = rows.reshape(len(batch), len(elastic) * table.shape[1])
    if not space.genes:
        return features
    return np.concatenate([features, _arch_features(batch)], axis=1)


def _arch_features(batch: ConfigBatch) -> FeatureArray:
    """One-hot of every architecture gene's value (all zeros where the gene is inactive)."""
    genes = batch.space.genes
    sizes = np.asarray([len(gene.values) for gene in genes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    features = np.zeros((len(batch), int(sizes.sum())), dtype=np.float32)
    rows, columns = np.nonzero(batch.gene_active)
    features[rows, offsets[columns] + batch.arch[rows, columns]] = 1.0
    return features


def encode_configs(
    space: ElasticSpace, configs: SubnetConfig | Sequence[SubnetConfig]
) -> FeatureArray:
    """The CQAP feature vectors of ``configs``, shape ``(n, feature_count(space))``, float32.

    Per elastic layer, in space order: a one-hot of the weight bits over ``space.w_bits``, a
    one-hot of the activation bits over ``space.a_bits``, then three binary conditions —
    per-channel weights, symmetric weights, symmetric activations. Pinned layers are left
    out (their bits never change). A joint space appends a one-hot of every architecture
    gene's value, and a layer or gene the config's architecture switches off reads all
    zeros. A ``ConfigBatch`` is encoded from its arrays directly; a list of configs is
    validated against ``space`` first.

    Raises:
        ValueError: a config does not belong to ``space``, or a ConfigBatch of another space
            (compared by fingerprint).
    """
    if isinstance(configs, ConfigBatch) and configs.space is not space:
        if configs.space.fingerprint != space.fingerprint:
            raise InputError(
                f"the configs belong to another space (fingerprint {configs.space.fingerprint}, "
                f"expected {space.fingerprint})"
            )
        configs = ConfigBatch(
            space,
            configs.w_bits,
            configs.a_bits,
            configs.form_index,
            arch=configs.arch if space.genes else None,
        )
    return encode_batch(space.batch(configs))
