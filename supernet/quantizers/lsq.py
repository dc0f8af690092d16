"""Elastic LSQ+: learnable step sizes and offsets kept per (bits, granularity, symmetry)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
from torch import nn

from eqsearch.space import Granularity, LayerChoice
from supernet.quantizers import lsq_kernels
from supernet.quantizers.base import (
    CalibrationData,
    ConvGeometry,
    ElasticQuantizer,
    QuantizerSpec,
    QuantParams,
    compute_dtype,
)
from supernet.quantizers.clipping import (
    MAX_SEARCH_VALUES,
    integer_grid,
    search_step_sizes,
    weighted_sample,
)
from supernet.quantizers.fake_quant import (
    effective_zero_points,
    lsq_fake_quantize,
    per_tensor_forward,
)
from supernet.quantizers.integer_conv import WeightLevels
from supernet.quantizers.lsq_constants import per_tensor_constants
from supernet.quantizers.lsq_conv import LsqGrids, lsq_conv2d
from supernet.quantizers.lsq_weights import WeightEntry, batchable

MAX_CHANNEL_VALUES = 1 << 10
"""Per-channel searches use at most this many random values of each channel (plus its exact
tails)."""


def weight_key(bits: int, granularity: Granularity, symmetric: bool) -> str:
    """Parameter name of a weight step size (and offset) entry, e.g. ``b4_channel_sym``."""
    return f"b{bits}_{granularity.value}_{'sym' if symmetric else 'asym'}"


def input_key(bits: int, symmetric: bool) -> str:
    """Parameter name of an activation step size (and offset) entry, e.g. ``b4_asym``."""
    return f"b{bits}_{'sym' if symmetric else 'asym'}"


class LsqHandle(NamedTuple):
    """The parameters and grids one choice reads in ``forward``."""

    w_log_step: nn.Parameter
    w_offset: nn.Parameter | None
    w_qmin: int
    w_qmax: int
    w_grad_scale: float
    a_log_step: nn.Parameter
    a_offset: nn.Parameter | None
    a_bits: int
    a_symmetric: bool
    w_per_channel: bool = False


class LsqQuantizer(ElasticQuantizer):
    """LSQ+ quantizer (Esser et al. 2020; Bhalgat et al. 2020) made elastic as in EQ-Net.

    Weights use the signed grid ``[-2^(b-1), 2^(b-1)-1]``; asymmetric weights add a learned
    offset. Activations use the unsigned grid ``[0, 2^b-1]`` when symmetric and the layer's
    calibration inputs are non-negative (after ReLU), the signed grid when they are not;
    asymmetric activations always use the unsigned grid with a learned offset.

    Step sizes are learned as logarithms (``step = exp(log_step)``): Adam moves every
    parameter by about the learning rate per step, which for an 8-bit step size of 0.002 is
    half its value per step, and can drive it negative; in log space the same update is a
    0.1 % relative change. The gradient still follows LSQ (chain rule through ``exp``).
    """

    name = "lsq"
    exportable = True
    input_signed: torch.Tensor
    calibrated: torch.Tensor

    def __init__(self, weight: torch.Tensor, spec: QuantizerSpec) -> None:
        super().__init__(weight, spec)
        out_channels = weight.shape[0]
        self.elements_per_channel = max(1, weight[0].numel())
        self.weight_numel = max(1, weight.numel())
        self.weight_log_steps = nn.ParameterDict()
        self.weight_offsets = nn.ParameterDict()
        self.input_log_steps = nn.ParameterDict()
        self.input_offsets = nn.ParameterDict()
        with torch.no_grad():
            mean_abs = weight.detach().abs().reshape(out_channels, -1).mean(dim=1)
            mean_abs = mean_abs.clamp_min(1e-6)
        for bits in self.weight_bits:
            qmax = integer_grid(bits, signed=True)[1]
            for granularity in spec.granularities:
                groups = mean_abs if granularity is Granularity.CHANNEL else mean_abs.mean()[None]
                for symmetric in spec.w_symmetries:
                    key = weight_key(bits, granularity, symmetric)
                    # LSQ's initial step 2·mean|w|/sqrt(Qp), until calibrate() runs.
                    initial = torch.log(2 * groups / math.sqrt(qmax))
                    self.weight_log_steps[key] = nn.Parameter(initial)
                    if not symmetric:
                        self.weight_offsets[key] = nn.Parameter(torch.zeros_like(groups))
        for bits in self.input_bits:
            for symmetric in spec.a_symmetries:
                key = input_key(bits, symmetric)
                initial = torch.full((1,), math.log(4.0 / (2**bits - 1)))
                self.input_log_steps[key] = nn.Parameter(initial)
                if not symmetric:
                    self.input_offsets[key] = nn.Parameter(torch.zeros(1))
        self.register_buffer("input_signed", torch.tensor(False))
        self.register_buffer("calibrated", torch.tensor(False))
        self._input_signed = False

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._input_signed = bool(self.input_signed)

    # -- choices -----------------------------------------------------------------------

    def _weight_grad_scale(self, per_channel: bool, qmax: int) -> float:
        count = self.elements_per_channel if per_channel else self.weight_numel
        return 1.0 / math.sqrt(count * qmax)

    def resolve(self, choice: LayerChoice) -> LsqHandle | None:
        """Look up the parameters of ``choice`` (cached: ``set_subnet`` is on hot paths)."""
        return cast("LsqHandle | None", self._cached_handle(choice))

    def _build_handle(self, choice: LayerChoice) -> LsqHandle:
        form = choice.form
        key = weight_key(choice.w_bits, form.w_granularity, form.w_symmetric)
        qmin, qmax = integer_grid(choice.w_bits, signed=True)
        a_key = input_key(choice.a_bits, form.a_symmetric)
        return LsqHandle(
            w_log_step=self.weight_log_steps[key],
            w_offset=None if form.w_symmetric else self.weight_offsets[key],
            w_qmin=qmin,
            w_qmax=qmax,
            w_grad_scale=self._weight_grad_scale(form.per_channel, qmax),
            a_log_step=self.input_log_steps[a_key],
            a_offset=None if form.a_symmetric else self.input_offsets[a_key],
            a_bits=choice.a_bits,
            a_symmetric=form.a_symmetric,
            w_per_channel=form.per_channel,
        )

    def input_grid(self, bits: int, symmetric: bool) -> tuple[int, int]:
        """The activation grid of (bits, symmetry) given the calibrated input sign."""
        return integer_grid(bits, signed=symmetric and self._input_signed)

    def _weight_entry(
        self, weight: torch.Tensor, handle: LsqHandle
    ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """The log steps, offsets and LSQ gradient scale that quantize ``weight``."""
        log_step: torch.Tensor = handle.w_log_step
        offset: torch.Tensor | None = handle.w_offset
        if weight.numel() == self.weight_numel:
            return log_step, offset, handle.w_grad_scale
        # The active part of an elastic-architecture layer (its first output channels, the
        # centre of its kernel): the shared per-channel entries of those channels, and LSQ's
        # gradient scale of the shape actually quantized.
        channels = weight.shape[0]
        if handle.w_per_channel:
            log_step = log_step[:channels]
            offset = None if offset is None else offset[:channels]
        count = weight.numel() // channels if handle.w_per_channel else weight.numel()
        return log_step, offset, 1.0 / math.sqrt(max(1, count) * handle.w_qmax)

    def _input_grid_and_scale(self, x: torch.Tensor, handle: LsqHandle) -> tuple[int, int, float]:
        qmin, qmax = self.input_grid(handle.a_bits, handle.a_symmetric)
        features = x.numel() // max(1, x.shape[0])
        return qmin, qmax, 1.0 / math.sqrt(max(1, features) * qmax)

    def quantize_weight(self, weight: torch.Tensor, handle: LsqHandle | None) -> torch.Tensor:
        """Fake-quantized weight for ``handle`` (the weight itself when None)."""
        if handle is None:
            return weight
        log_step, offset, grad_scale = self._weight_entry(weight, handle)
        return lsq_fake_quantize(
            weight, log_step.exp(), offset, handle.w_qmin, handle.w_qmax, grad_scale
        )

    def quantize_input(self, x: torch.Tensor, handle: LsqHandle | None) -> torch.Tensor:
        """Fake-quantized input activation for ``handle`` (``x`` itself when None)."""
        if handle is None:
            return x
        qmin, qmax, grad_scale = self._input_grid_and_scale(x, handle)
        return lsq_fake_quantize(
            x, handle.a_log_step.exp(), handle.a_offset, qmin, qmax, grad_scale
        )

    def frozen_input_quantizer(self, handle: LsqHandle) -> Callable[[torch.Tensor], torch.Tensor]:
        """The input quantization of ``handle`` with its constants computed once (the
        one-pass kernel where it serves the tensor; see :func:`per_tensor_forward`)."""
        qmin, qmax = self.input_grid(handle.a_bits, handle.a_symmetric)
        step = handle.a_log_step.detach().exp()
        constants = per_tensor_constants(step, handle.a_offset, qmin, qmax, step.dtype)

        def quantize_input(x: torch.Tensor) -> torch.Tensor:
            if x.dtype == step.dtype:
                return per_tensor_forward(x, constants)
            return self.quantize_input(x, handle)

        return quantize_input

    def shared_weight_entry(self, weight: torch.Tensor, handle: LsqHandle) -> WeightEntry | None:
        """The per-channel entry of ``weight`` (for :mod:`supernet.quantizers.lsq_weights`),
        or None for a per-tensor entry or tensors its kernel does not take."""
        if not handle.w_per_channel:
            return None
        log_step, offset, grad_scale = self._weight_entry(weight, handle)
        entry = WeightEntry(weight, log_step, offset, handle.w_qmin, handle.w_qmax, grad_scale)
        return entry if batchable(entry) else None

    def quantized_conv2d(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        handle: LsqHandle,
        geometry: ConvGeometry,
        *,
        quantized_weight: torch.Tensor | None = None,
        quantized_weight_levels: WeightLevels | None = None,
    ) -> torch.Tensor:
        """``F.conv2d(quantize_input(x), quantize_weight(weight), bias, ...)`` as one autograd
        node, for training (see :mod:`supernet.quantizers.lsq_conv`); with
        ``quantized_weight`` (and, for a symmetric one, its levels, for an integer
        convolution), of the input's quantization and the convolution only."""
        log_step: torch.Tensor | None
        if quantized_weight is None:
            log_step, offset, weight_grad_scale = self._weight_entry(weight, handle)
        else:  # the weight's entry belongs to the node that quantized it
            weight, log_step, offset = quantized_weight, None, None
            weight_grad_scale = handle.w_grad_scale
        qmin, qmax, input_grad_scale = self._input_grid_and_scale(x, handle)
        grids = LsqGrids(
            qmin, qmax, input_grad_scale, handle.w_qmin, handle.w_qmax, weight_grad_scale
        )
        return lsq_conv2d(
            x,
            weight,
            bias,
            handle.a_log_step,
            handle.a_offset,
            log_step,
            offset,
            grids,
            geometry,
            quantized_weight_levels,
        )

    def input_directions(
        self, x: torch.Tensor, handle: LsqHandle
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The quantized input without a graph, and its derivatives by the input parameters.

        For an input that needs no gradient (the images into the first layer), the layer can
        then compute ``W * x_hat`` plus ``Σ (W * D_k)·(p_k − p_k.detach())`` instead of
        differentiating through ``W * x_hat``: the same value and, since a convolution is
        linear, the same parameter gradients ``⟨∂L/∂y, W * D_k⟩ = ⟨Wᵀ * ∂L/∂y, D_k⟩`` — without
        the backward-data convolution into a 3-channel input, which oneDNN runs slowly (on
        ResNet-20, 10 ms of a 130 ms training step, for a gradient nobody reads).

        Returns:
            ``(x_hat, [(D_k, p_k), ...])``: ``D_k = ∂x_hat/∂p_k`` (with the LSQ gradient scale)
            and ``p_k`` the step (and offset) as the forward reads them, with their graphs.
        """
        qmin, qmax, grad_scale = self._input_grid_and_scale(x, handle)
        step = handle.a_log_step.exp()
        with torch.no_grad():
            x = x.to(compute_dtype(x.dtype))
            return self._input_directions(x, step, handle, qmin, qmax, grad_scale)

    def _input_directions(
        self,
        x: torch.Tensor,
        step: torch.Tensor,
        handle: LsqHandle,
        qmin: int,
        qmax: int,
        grad_scale: float,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        constants = per_tensor_constants(step, handle.a_offset, qmin, qmax, x.dtype)
        with_offset = handle.a_offset is not None
        numbers = constants.numbers()
        if numbers is not None and lsq_kernels.servable(x):
            x_hat, step_direction, offset_direction = lsq_kernels.input_directions(
                x,
                numbers.step,
                numbers.reciprocal,
                numbers.low,
                numbers.high,
                numbers.zero_point,
                grad_scale,
                with_offset,
            )
        else:
            x_hat = per_tensor_forward(x, constants)
            low, high = constants.low * constants.step, constants.high * constants.step
            outside = ((x <= low) | (x >= high)).to(x.dtype)
            # ∂x_hat/∂s = (x_hat − m·x)/s + z·(1 − m), m = 1 − outside (the fake_quant backward)
            step_direction = torch.addcmul(x_hat, x, outside).sub_(x).div_(constants.step)
            if isinstance(constants.zero_point, torch.Tensor):  # the device path: no read
                step_direction.addcmul_(outside, constants.zero_point)
            elif constants.zero_point:
                step_direction.add_(outside, alpha=constants.zero_point)
            step_direction.mul_(grad_scale)
            offset_direction = outside.mul_(grad_scale) if with_offset else None
        pairs = [(step_direction, step)]
        if handle.a_offset is not None and offset_direction is not None:
            pairs.append((offset_direction, handle.a_offset))
        return x_hat, pairs

    def parameters_for(self, choice: LayerChoice) -> list[nn.Parameter]:
        """Log step sizes and offsets that ``choice`` reads."""
        handle = self.resolve(choice)
        if handle is None:
            return []
        candidates = [handle.w_log_step, handle.w_offset, handle.a_log_step, handle.a_offset]
        return [p for p in candidates if p is not None]

    @torch.no_grad()
    def quant_params(self, choice: LayerChoice) -> QuantParams | None:
        """Effective steps, integer zero points and grids of ``choice`` (None for FP)."""
        handle = self.resolve(choice)
        if handle is None:
            return None
        w_step = handle.w_log_step.exp()
        a_step = handle.a_log_step.exp()
        a_qmin, a_qmax = self.input_grid(handle.a_bits, handle.a_symmetric)
        return QuantParams(
            w_step=w_step.clone(),
            w_zero_point=effective_zero_points(
                w_step, handle.w_offset, handle.w_qmin, handle.w_qmax
            ),
            w_qmin=handle.w_qmin,
            w_qmax=handle.w_qmax,
            a_step=a_step.clone(),
            a_zero_point=effective_zero_points(a_step, handle.a_offset, a_qmin, a_qmax),
            a_qmin=a_qmin,
            a_qmax=a_qmax,
        )

    def weight_step(self, bits: int, granularity: Granularity, symmetric: bool) -> torch.Tensor:
        """The (detached) weight step sizes of one entry."""
        return self.weight_log_steps[weight_key(bits, granularity, symmetric)].detach().exp()

    def input_step(self, bits: int, symmetric: bool) -> torch.Tensor:
        """The (detached) activation step size of one entry."""
        return self.input_log_steps[input_key(bits, symmetric)].detach().exp()

    @torch.no_grad()
    def set_weight_step(
        self, bits: int, granularity: Granularity, symmetric: bool, step: torch.Tensor
    ) -> None:
        """Overwrite one weight entry's step sizes (e.g. heuristics in ablations)."""
        parameter = self.weight_log_steps[weight_key(bits, granularity, symmetric)]
        parameter.copy_(torch.log(step.clamp_min(1e-12)).to(parameter).expand_as(parameter))

    # -- initialisation ----------------------------------------------------------------

    def _calibrate(self, data: CalibrationData) -> None:
        """Clipping search for every (bits, form) entry from the weight and input samples."""
        generator = data.generator
        self._input_signed = data.input_min < 0
        self.input_signed.fill_(self._input_signed)
        weight = data.weight
        out_channels = weight.shape[0]
        weight_bits = self.weight_bits
        if weight_bits:
            flat = weight.detach().reshape(out_channels, -1)
            for granularity in self.spec.granularities:
                if granularity is Granularity.CHANNEL:
                    values, weights = weighted_sample(flat, MAX_CHANNEL_VALUES, generator)
                else:
                    values, weights = weighted_sample(
                        flat.reshape(1, -1), MAX_SEARCH_VALUES, generator
                    )
                for symmetric in self.spec.w_symmetries:
                    steps, offsets = search_step_sizes(
                        values, weight_bits, signed=True, symmetric=symmetric, weights=weights
                    )
                    for row, bits in enumerate(weight_bits):
                        key = weight_key(bits, granularity, symmetric)
                        self.weight_log_steps[key].copy_(torch.log(steps[row]))
                        if not symmetric:
                            self.weight_offsets[key].copy_(offsets[row])
        input_bits = self.input_bits
        if input_bits:
            sample, sample_weights, input_range = data.input_sample()
            for symmetric in self.spec.a_symmetries:
                steps, offsets = search_step_sizes(
                    sample,
                    input_bits,
                    signed=symmetric and self._input_signed,
                    symmetric=symmetric,
                    value_range=input_range,
                    weights=sample_weights,
                )
                for row, bits in enumerate(input_bits):
                    key = input_key(bits, symmetric)
                    target = self.input_log_steps[key]
                    target.copy_(torch.log(steps[row]).to(target.device))
                    if not symmetric:
                        self.input_offsets[key].copy_(offsets[row].to(target.device))

    @torch.no_grad()
    def inherit(self, from_bits: int, to_bits: int) -> None:
        """OQAT bit inheritance: ``to_bits`` steps = 2^(from−to) × ``from_bits`` steps.

        For ``to_bits = from_bits − 1`` the step doubles and the (b−1)-bit grid is the even
        points of the b-bit grid; the offset β stays, so the zero point halves with the step.
        """
        shift = (from_bits - to_bits) * math.log(2.0)
        prefix_from, prefix_to = f"b{from_bits}_", f"b{to_bits}_"
        for log_steps, offsets in (
            (self.weight_log_steps, self.weight_offsets),
            (self.input_log_steps, self.input_offsets),
        ):
            for key in list(log_steps.keys()):
                if not key.startswith(prefix_from):
                    continue
                target = prefix_to + key[len(prefix_from) :]
                if target not in log_steps:
                    continue
                log_steps[target].copy_(log_steps[key] + shift)
                if key in offsets:
                    offsets[target].copy_(offsets[key])
