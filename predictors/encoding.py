"""Subnet configs as feature vectors: the conditional encoding of CQAP, vectorised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from eqsearch.space import ConfigBatch, ElasticSpace, SubnetConfig

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


def encode_batch(batch: ConfigBatch) -> FeatureArray:
    """Features of a :class:`ConfigBatch` (read from its arrays; no per-config Python)."""
    space = batch.space
    elastic = np.asarray(space.elastic_indices, dtype=np.int64)
    n = len(batch)
    w_bits = batch.w_bits[:, elastic, None]
    a_bits = batch.a_bits[:, elastic, None]
    w_onehot = w_bits == np.asarray(space.w_bits, dtype=np.int64)
    a_onehot = a_bits == np.asarray(space.a_bits, dtype=np.int64)
    flags = np.stack(
        [
            batch.per_channel[:, elastic],
            batch.w_symmetric[:, elastic],
            batch.a_symmetric[:, elastic],
        ],
        axis=2,
    )
    if space.genes:
        # a layer that does not run reads all zeros (its bits are 0, its flags masked)
        flags &= batch.active[:, elastic, None]
    blocks = np.concatenate([w_onehot, a_onehot, flags], axis=2)
    features: FeatureArray = blocks.reshape(n, len(elastic) * blocks.shape[2]).astype(np.float32)
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
            raise ValueError(
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
