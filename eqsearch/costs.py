"""Cost models of a subnet: average bits, compression, BitOPs, model size, MACs and FLOPs.

Every cost reads each config's own layer sizes (``ConfigBatch.params``, ``macs``, ``inputs``,
``channels``): in a joint space they follow the config's architecture, and layers it does
not run count nothing; without architecture genes they are the space's measured constants.
Each takes one config (and returns a float) or a sequence of them (and returns an array).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast, overload

import numpy as np
import numpy.typing as npt

from eqsearch.space import FULL_PRECISION_BITS, ConfigBatch, ElasticSpace, SubnetConfig

FloatArray = npt.NDArray[np.float64]
Configs = SubnetConfig | Sequence[SubnetConfig]

SCALE_BYTES = 4
"""Each step size is stored as float32."""


class Cost(Protocol):
    """A cost of one config (a float) or of each of a sequence of configs (an array)."""

    @overload
    def __call__(self, space: ElasticSpace, configs: SubnetConfig, **options: Any) -> float: ...
    @overload
    def __call__(
        self, space: ElasticSpace, configs: Sequence[SubnetConfig], **options: Any
    ) -> FloatArray: ...


def _per_config(of_batch: Callable[..., FloatArray]) -> Cost:
    """The cost whose values for a batch ``of_batch(space, batch, **options)`` computes."""

    @functools.wraps(of_batch)
    def cost(space: ElasticSpace, configs: Configs, **options: Any) -> float | FloatArray:
        values = of_batch(space, space.batch(configs), **options)
        if isinstance(configs, SubnetConfig):
            return float(values[0])
        return values

    return cast(Cost, cost)


def _average(
    space: ElasticSpace, bits: npt.NDArray[np.int64], weights: FloatArray, include_pinned: bool
) -> FloatArray:
    quantized = bits != FULL_PRECISION_BITS
    mask = quantized if include_pinned else quantized & (space.layer_arrays["elastic"] > 0)
    weighted = np.where(mask, weights, 0.0)
    average: FloatArray = (weighted * bits).sum(axis=1) / weighted.sum(axis=1)
    return average


@_per_config
def average_weight_bits(
    space: ElasticSpace, batch: ConfigBatch, *, include_pinned: bool = False
) -> FloatArray:
    """Weight bits averaged over parameters (the ``--w-bits`` budget).

    By default the average covers the layers the search controls: layers pinned to fixed
    bits (the 8-bit first and last layers) are left out, as in the EQ-Net paper, whose
    "3-bit mixed precision" ResNet-18 has the compression of uniform 3 bits with 8-bit first
    and last layers. ``include_pinned=True`` averages over every quantized layer.
    """
    return _average(space, batch.w_bits, batch.params, include_pinned)


@_per_config
def average_activation_bits(
    space: ElasticSpace, batch: ConfigBatch, *, include_pinned: bool = False
) -> FloatArray:
    """Activation bits averaged over input activations (the ``--a-bits`` budget).

    Covers the same layers as :func:`average_weight_bits`.
    """
    return _average(space, batch.a_bits, batch.inputs, include_pinned)


def _compression(bits: npt.NDArray[np.int64], counts: FloatArray) -> FloatArray:
    """``32·Σcounts / Σ(counts·bits)`` per config: how many times smaller than float32."""
    compression: FloatArray = FULL_PRECISION_BITS * counts.sum(axis=1) / (bits * counts).sum(axis=1)
    return compression


@_per_config
def weight_compression(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """W-Comp: ``32·Σn / Σ(n·b_w)`` over every layer that runs (full-precision layers at 32
    bits)."""
    return _compression(batch.w_bits, batch.params)


@_per_config
def activation_compression(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """A-Comp: ``32·Σm / Σ(m·b_a)`` with m the input activations of every layer that runs."""
    return _compression(batch.a_bits, batch.inputs)


@_per_config
def bitops(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """BitOPs per input sample: ``Σ MACs·b_w·b_a`` (full-precision layers at 32·32)."""
    values: FloatArray = (batch.macs * batch.w_bits * batch.a_bits).sum(axis=1)
    return values


@_per_config
def model_size_bytes(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """Bytes of the quantizable layers' weights packed at their bit widths.

    Each quantized layer adds its weight step sizes (float32, one per output channel for
    per-channel, one per tensor) and, when asymmetric, one integer zero point per step size
    of ``ceil(b_w/8)`` bytes. Full-precision layers count 4 bytes per weight.
    """
    weights = np.ceil(batch.params * batch.w_bits / 8.0)
    scales = np.where(batch.per_channel, batch.channels, 1.0)
    quantized = batch.w_bits != FULL_PRECISION_BITS
    if space.genes:
        quantized &= batch.active
    zero_point_bytes = np.where(batch.w_symmetric, 0.0, np.ceil(batch.w_bits / 8.0))
    overhead = np.where(quantized, scales * (SCALE_BYTES + zero_point_bytes), 0.0)
    values: FloatArray = (weights + overhead).sum(axis=1)
    return values


@_per_config
def macs(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """Multiply-accumulates per input sample of the architecture alone (``Σ MACs`` over the
    layers that run, whatever their bits)."""
    values: FloatArray = batch.macs.sum(axis=1)
    return values


@_per_config
def flops(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """Floating-point operations per input sample of the architecture alone: ``2·MACs`` (a
    multiply and an add each; OFA and OQA report MACs under the name FLOPs)."""
    return 2.0 * macs(space, batch)


@_per_config
def parameter_count(space: ElasticSpace, batch: ConfigBatch) -> FloatArray:
    """Weight elements of the quantizable layers that run."""
    values: FloatArray = batch.params.sum(axis=1)
    return values


def cost_table(space: ElasticSpace, configs: Sequence[SubnetConfig]) -> dict[str, FloatArray]:
    """Every cost of every config, as columns: ``w_bits``, ``a_bits``, ``w_comp``,
    ``a_comp``, ``bitops``, ``size_bytes`` (and, in a joint space, ``macs`` and ``params``
    of the architecture)."""
    batch = space.batch(configs)
    table = {
        "w_bits": average_weight_bits(space, batch),
        "a_bits": average_activation_bits(space, batch),
        "w_comp": weight_compression(space, batch),
        "a_comp": activation_compression(space, batch),
        "bitops": bitops(space, batch),
        "size_bytes": model_size_bytes(space, batch),
    }
    if space.genes:
        table["macs"] = macs(space, batch)
        table["params"] = parameter_count(space, batch)
    return table


def bits_range(
    space: ElasticSpace, *, include_pinned: bool = False
) -> dict[str, tuple[float, float]]:
    """Smallest and largest reachable average weight and activation bits."""
    smallest = space.smallest()
    largest = space.largest()
    return {
        "w_bits": (
            average_weight_bits(space, smallest, include_pinned=include_pinned),
            average_weight_bits(space, largest, include_pinned=include_pinned),
        ),
        "a_bits": (
            average_activation_bits(space, smallest, include_pinned=include_pinned),
            average_activation_bits(space, largest, include_pinned=include_pinned),
        ),
    }
