"""Elastic N2UQ: learnable non-uniform activation thresholds, uniform output levels, per bits."""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
from torch import nn

from eqsearch.errors import InputError
from eqsearch.space import Granularity, LayerChoice
from supernet.quantizers.base import CalibrationData, ElasticQuantizer, QuantizerSpec
from supernet.quantizers.clipping import search_step_sizes
from supernet.quantizers.n2uq_ops import n2uq_activation, n2uq_weight


def bits_key(bits: int) -> str:
    """Parameter name of one activation bit width's entries, e.g. ``b4``."""
    return f"b{bits}"


def interval_count(bits: int) -> int:
    """Intervals between the 2^b uniform output levels: 2^b − 1."""
    return 2**bits - 1


class N2uqHandle(NamedTuple):
    """The parameters one choice reads in ``forward``."""

    w_bits: int
    log_in_scale: nn.Parameter
    log_out_scale: nn.Parameter
    start: nn.Parameter
    log_widths: nn.Parameter


class N2uqQuantizer(ElasticQuantizer):
    """N2UQ (Liu et al., CVPR 2022) made elastic over bit widths.

    Activations: per bit width b a learnable start ``s``, ``2^b − 1`` interval widths (learned
    as logarithms, so they stay positive), an input scale ``α_in`` and an output scale
    ``α_out`` (both learned as logarithms); thresholds at the interval midpoints, outputs on
    2^b uniform levels ``α_in·s + α_out·k``; backward by the generalized straight-through
    estimator (see :mod:`supernet.quantizers.n2uq_ops`). The learnable start is an offset, so
    the activation form is asymmetric; the output offset ``α_in·s`` folds into the layer's
    bias on integer hardware, which then sees the unsigned level ``k``.

    Weights: per output channel ``α = γ_b·mean|W|``, 2^b uniform levels without a zero level,
    the official code's straight-through gradient of ``W/α`` (``g/α``); nothing to learn, so
    the only weight form is per-channel symmetric. Forms it cannot express (per-tensor
    weights, asymmetric weights, symmetric activations) are refused when the quantizer is
    built.
    """

    name = "n2uq"
    export_refusal = (
        "its non-uniform activation thresholds have no QuantizeLinear/DequantizeLinear equivalent"
    )
    supported_granularities = (Granularity.CHANNEL,)
    supported_w_symmetries = (True,)
    supported_a_symmetries = (False,)
    calibrated: torch.Tensor

    def __init__(self, weight: torch.Tensor, spec: QuantizerSpec) -> None:
        super().__init__(weight, spec)
        self.input_log_scales = nn.ParameterDict()
        self.output_log_scales = nn.ParameterDict()
        self.input_starts = nn.ParameterDict()
        self.input_log_widths = nn.ParameterDict()
        for bits in self.input_bits:
            key = bits_key(bits)
            # A uniform grid of step 4/(2^b − 1) from 0 until calibrate() runs.
            log_step = math.log(4.0 / interval_count(bits))
            self.input_log_scales[key] = nn.Parameter(torch.full((1,), log_step))
            self.output_log_scales[key] = nn.Parameter(torch.full((1,), log_step))
            self.input_starts[key] = nn.Parameter(torch.zeros(1))
            self.input_log_widths[key] = nn.Parameter(torch.zeros(interval_count(bits)))
        self.register_buffer("calibrated", torch.tensor(False))

    # -- choices -----------------------------------------------------------------------

    def resolve(self, choice: LayerChoice) -> N2uqHandle | None:
        """Look up the parameters of ``choice`` (cached: ``set_subnet`` is on hot paths)."""
        return cast("N2uqHandle | None", self._cached_handle(choice))

    def _build_handle(self, choice: LayerChoice) -> N2uqHandle:
        key = bits_key(choice.a_bits)
        return N2uqHandle(
            w_bits=choice.w_bits,
            log_in_scale=self.input_log_scales[key],
            log_out_scale=self.output_log_scales[key],
            start=self.input_starts[key],
            log_widths=self.input_log_widths[key],
        )

    def quantize_weight(self, weight: torch.Tensor, handle: N2uqHandle | None) -> torch.Tensor:
        """Entropy-preserving weight quantization for ``handle`` (the weight itself when None)."""
        if handle is None:
            return weight
        return n2uq_weight(weight, handle.w_bits)

    def quantize_input(self, x: torch.Tensor, handle: N2uqHandle | None) -> torch.Tensor:
        """N2UQ-quantized input activation for ``handle`` (``x`` itself when None)."""
        if handle is None:
            return x
        return n2uq_activation(
            x, handle.log_in_scale, handle.log_out_scale, handle.start, handle.log_widths
        )

    def parameters_for(self, choice: LayerChoice) -> list[nn.Parameter]:
        """Scales, start and widths that ``choice`` reads (weights have none)."""
        handle = self.resolve(choice)
        if handle is None:
            return []
        return [handle.log_in_scale, handle.log_out_scale, handle.start, handle.log_widths]

    @torch.no_grad()
    def thresholds(self, bits: int) -> torch.Tensor:
        """The (detached) input thresholds of one bit width, in input units (2^b − 1 values)."""
        key = bits_key(bits)
        widths = self.input_log_widths[key].exp()
        edges = self.input_starts[key] + torch.cumsum(widths, 0) - widths
        return (edges + widths / 2) * self.input_log_scales[key].exp()

    # -- initialisation ----------------------------------------------------------------

    def _calibrate(self, data: CalibrationData) -> None:
        """Initialise every activation bit width from a sample of the layer's inputs.

        With uniform output levels, the thresholds that minimise the quantization error are the
        midpoints between the levels, so the data-driven start is a uniform grid: the clipping
        search of LSQ+ (asymmetric, unsigned levels) picks each bit width's step and lowest
        level; the widths start equal (training makes them non-uniform) and both scales at the
        step. The weights need nothing (their scale follows mean|W| in every forward).
        """
        input_bits = self.input_bits
        if input_bits:
            sample, sample_weights, value_range = data.input_sample()
            steps, offsets = search_step_sizes(
                sample,
                input_bits,
                signed=False,
                symmetric=False,
                value_range=value_range,
                weights=sample_weights,
            )
            for row, bits in enumerate(input_bits):
                key = bits_key(bits)
                log_step = torch.log(steps[row]).to(self.input_log_scales[key].device)
                self.input_log_scales[key].copy_(log_step)
                self.output_log_scales[key].copy_(log_step)
                self.input_starts[key].copy_((offsets[row] / steps[row]).to(log_step.device))
                self.input_log_widths[key].zero_()

    @torch.no_grad()
    def inherit(self, from_bits: int, to_bits: int) -> None:
        """``to_bits`` intervals from merging groups of 2^(from−to) adjacent ``from_bits`` ones.

        The lower bit width keeps every 2^(from−to)-th edge of the higher one from the start
        (the last higher interval is dropped, as OQAT drops the top level), so its uniform
        output levels are every 2^(from−to)-th higher level: the output step is multiplied by
        2^(from−to), the input scale and the start are kept.
        """
        if to_bits >= from_bits:
            raise InputError(f"inherit needs to_bits < from_bits; got {from_bits} -> {to_bits}")
        source, target = bits_key(from_bits), bits_key(to_bits)
        if source not in self.input_log_widths or target not in self.input_log_widths:
            return
        group = 2 ** (from_bits - to_bits)
        count = interval_count(to_bits)
        widths = self.input_log_widths[source].exp()[: count * group]
        merged = widths.reshape(count, group).sum(dim=1)
        self.input_log_widths[target].copy_(torch.log(merged))
        self.input_starts[target].copy_(self.input_starts[source])
        self.input_log_scales[target].copy_(self.input_log_scales[source])
        self.output_log_scales[target].copy_(
            self.output_log_scales[source] + math.log(float(group))
        )
