"""A fixed subnet as a plain network: integer weights, explicit quantize/dequantize steps."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError
from eqsearch.space import Granularity, LayerChoice, SubnetConfig
from supernet.networks.elastic import Supernet
from supernet.networks.layers import (
    ElasticQuantConv2d,
    ElasticQuantLayer,
    ElasticQuantLinear,
    conv_arguments,
)
from supernet.quantizers import ElasticQuantizer, exportable_quantizers

MAX_EXPORT_BITS = 8
"""Grids up to 8 bits fit int8/uint8 QuantizeLinear; wider ones would need opset-21 int16."""


@dataclass(frozen=True)
class LayerQuantization:
    """How one layer of a fixed subnet computes: its integer weight and both grids.

    ``weight_integers`` hold ``q`` with ``weight = (q − zero_point)·scale`` exactly as the
    supernet's fake quantizer produces it. Scales and zero points have one entry per output
    channel (``weight_axis = 0``) or one in all (``weight_axis = None``). A full-precision layer
    (``choice.full_precision``) has no integers and keeps ``float_weight``.
    """

    name: str
    choice: LayerChoice
    float_weight: torch.Tensor
    bias: torch.Tensor | None
    weight_integers: torch.Tensor | None = None
    weight_scale: torch.Tensor | None = None
    weight_zero_point: torch.Tensor | None = None
    weight_axis: int | None = None
    weight_qmin: int = 0
    weight_qmax: int = 0
    input_scale: float = 1.0
    input_zero_point: int = 0
    input_qmin: int = 0
    input_qmax: int = 0

    @property
    def quantized(self) -> bool:
        """Whether the layer is quantized (False: full precision)."""
        return self.weight_integers is not None


def check_exportable(supernet: Supernet) -> None:
    """Raise ValueError when a layer's quantizer cannot be written as QuantizeLinear/Dequantize.

    Raises:
        ValueError: naming the quantizer and the exportable ones.
    """
    for name, layer in supernet.elastic_layers().items():
        _exportable_quantizer(name, layer)


def _exportable_quantizer(name: str, layer: ElasticQuantLayer) -> ElasticQuantizer:
    # a quantizer exports when its grids are uniform affine ones, exactly a QDQ pair
    quantizer = layer.quantizer
    if not quantizer.exportable:
        raise InputError(
            f"layer {name!r} uses quantizer {quantizer.name!r}, which cannot be exported: "
            f"{quantizer.export_refusal}; exportable quantizers: "
            f"{', '.join(exportable_quantizers())}"
        )
    return quantizer


def _check_bits(name: str, choice: LayerChoice) -> None:
    if choice.full_precision:
        return
    for field_name, bits in (("w_bits", choice.w_bits), ("a_bits", choice.a_bits)):
        if bits > MAX_EXPORT_BITS:
            raise InputError(
                f"layer {name!r}: {field_name}={bits} cannot be exported; QuantizeLinear grids "
                f"here hold at most {MAX_EXPORT_BITS} bits (or full precision)"
            )


@torch.no_grad()
def quantize_layers(supernet: Supernet, config: SubnetConfig) -> dict[str, LayerQuantization]:
    """The integer weights and grids of every elastic layer under ``config``.

    The integers are read back from the fake-quantized weight the subnet computes with, so
    dequantizing them reproduces that weight bit for bit.

    A joint supernet's config is read from its static network (see
    :func:`supernet.networks.extract.extract`): one entry per layer that runs.

    Raises:
        ValueError: ``config`` is not in the space, or a layer cannot be exported.
    """
    check_exportable(supernet)
    if supernet.joint:
        static = _extracted(supernet, config)
        return quantize_layers(static, _active(static))
    supernet.space.validate(config)
    for (name, _), choice in zip(supernet.elastic_layers().items(), config.choices, strict=True):
        _check_bits(name, choice)
    result: dict[str, LayerQuantization] = {}
    with supernet.using(config):
        for (name, layer), choice in zip(
            supernet.elastic_layers().items(), config.choices, strict=True
        ):
            result[name] = _quantize_layer(name, layer, choice)
    return result


def _quantize_layer(name: str, layer: ElasticQuantLayer, choice: LayerChoice) -> LayerQuantization:
    layer_bias: torch.Tensor | None = getattr(layer, "bias", None)
    bias = None if layer_bias is None else layer_bias.detach().float().clone()
    weight = layer.quantized_weight().detach().float().clone()
    if choice.full_precision:
        return LayerQuantization(name=name, choice=choice, float_weight=weight, bias=bias)
    params = _exportable_quantizer(name, layer).quant_params(choice)
    assert params is not None  # not full precision
    per_channel = choice.form.w_granularity is Granularity.CHANNEL
    view = (-1,) + (1,) * (weight.dim() - 1)
    scale = params.w_step.detach().float().reshape(-1)
    zero_point = params.w_zero_point.to(torch.int32).reshape(-1)
    # weight = k·scale with an integer k computed in float32; dividing recovers k exactly.
    steps = scale.view(view) if per_channel else scale.reshape(())
    offsets = zero_point.view(view) if per_channel else zero_point.reshape(())
    integers = torch.round(weight / steps).to(torch.int32) + offsets
    if int(integers.min()) < params.w_qmin or int(integers.max()) > params.w_qmax:
        raise InputError(f"layer {name!r}: recovered weight integers leave their grid")
    a_step = float(params.a_step.reshape(-1)[0])
    return LayerQuantization(
        name=name,
        choice=choice,
        float_weight=weight,
        bias=bias,
        weight_integers=integers,
        weight_scale=scale,
        weight_zero_point=zero_point,
        weight_axis=0 if per_channel else None,
        weight_qmin=params.w_qmin,
        weight_qmax=params.w_qmax,
        input_scale=a_step,
        input_zero_point=int(params.a_zero_point.reshape(-1)[0]),
        input_qmin=params.a_qmin,
        input_qmax=params.a_qmax,
    )


# -- deploy modules ----------------------------------------------------------------------------


def _storage_dtype(qmin: int) -> torch.dtype:
    return torch.uint8 if qmin >= 0 else torch.int8


class _QuantizeDequantize(torch.autograd.Function):
    """Per-tensor quantize/dequantize; exported as (Clip →) QuantizeLinear → DequantizeLinear."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        qmin: int,
        qmax: int,
        low: float,
        high: float,
    ) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), qmin, qmax)

    @staticmethod
    def symbolic(
        g: Any,
        x: Any,
        scale: Any,
        zero_point: Any,
        qmin: int,
        qmax: int,
        low: float,
        high: float,
    ) -> Any:
        storage = torch.iinfo(_storage_dtype(qmin))
        if (qmin, qmax) != (storage.min, storage.max):
            # A b-bit grid inside int8/uint8: clip in the float domain to its end points.
            x = g.op(
                "Clip",
                x,
                g.op("Constant", value_t=torch.tensor(low, dtype=torch.float32)),
                g.op("Constant", value_t=torch.tensor(high, dtype=torch.float32)),
            )
        quantized = g.op("QuantizeLinear", x, scale, zero_point)
        return g.op("DequantizeLinear", quantized, scale, zero_point)


class _DequantizeWeight(torch.autograd.Function):
    """Integer weight → float; exported as one DequantizeLinear on integer initializers."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, integers: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int
    ) -> torch.Tensor:
        if axis < 0:
            return (integers.float() - zero_point.float()) * scale
        view = (-1,) + (1,) * (integers.dim() - 1)
        return (integers.float() - zero_point.float().view(view)) * scale.view(view)

    @staticmethod
    def symbolic(g: Any, integers: Any, scale: Any, zero_point: Any, axis: int) -> Any:
        if axis < 0:
            return g.op("DequantizeLinear", integers, scale, zero_point)
        return g.op("DequantizeLinear", integers, scale, zero_point, axis_i=axis)


class InputQuantizer(nn.Module):
    """Quantize/dequantize a layer's input on its per-tensor grid (an exported QDQ pair)."""

    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int) -> None:
        super().__init__()
        self.qmin, self.qmax = qmin, qmax
        scale32 = torch.tensor(scale, dtype=torch.float32)
        self.register_buffer("scale", scale32)
        self.register_buffer("zero_point", torch.tensor(zero_point, dtype=_storage_dtype(qmin)))
        self.low = float((qmin - zero_point) * scale32)
        self.high = float((qmax - zero_point) * scale32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QuantizeDequantize.apply(  # type: ignore[no-any-return]
            x, self.scale, self.zero_point, self.qmin, self.qmax, self.low, self.high
        )


class DequantizedWeight(nn.Module):
    """Integer weight with per-channel or per-tensor scale and zero point."""

    integers: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, quantization: LayerQuantization) -> None:
        super().__init__()
        assert quantization.weight_integers is not None
        assert quantization.weight_scale is not None
        assert quantization.weight_zero_point is not None
        storage = _storage_dtype(quantization.weight_qmin)
        self.axis = -1 if quantization.weight_axis is None else quantization.weight_axis
        scale = quantization.weight_scale.float()
        zero_point = quantization.weight_zero_point
        if self.axis < 0:
            scale, zero_point = scale.reshape(()), zero_point.reshape(())
        self.register_buffer("integers", quantization.weight_integers.to(storage))
        self.register_buffer("scale", scale.clone())
        self.register_buffer("zero_point", zero_point.to(storage))

    def forward(self) -> torch.Tensor:
        return _DequantizeWeight.apply(  # type: ignore[no-any-return]
            self.integers, self.scale, self.zero_point, self.axis
        )


class DeployConv2d(nn.Module):
    """A Conv2d of a fixed subnet: quantized input, dequantized integer weight."""

    def __init__(self, layer: ElasticQuantConv2d, quantization: LayerQuantization) -> None:
        super().__init__()
        if layer.padding_mode != "zeros":
            raise InputError(
                f"layer {quantization.name!r}: padding_mode={layer.padding_mode!r} cannot be "
                "exported; only 'zeros'"
            )
        self.stride, self.padding = layer.stride, layer.padding
        self.dilation, self.groups = layer.dilation, layer.groups
        self.input_quantizer = _input_quantizer(quantization)
        self.weight = DequantizedWeight(quantization)
        self.bias = None if quantization.bias is None else nn.Parameter(quantization.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(
            self.input_quantizer(x),
            self.weight(),
            None,
            self.stride,
            self.padding,  # type: ignore[arg-type]
            self.dilation,
            self.groups,
        )
        # The bias as its own Add: ONNX Runtime quantizes the float bias of a Conv between
        # DequantizeLinear inputs to int32 at (input step × weight step), which at 4 bits moves
        # outputs by up to half that product (0.01 on an SE conv of a 4-bit MobileNetV3)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class DeployLinear(nn.Module):
    """A Linear of a fixed subnet: quantized input, dequantized integer weight."""

    def __init__(self, quantization: LayerQuantization) -> None:
        super().__init__()
        self.input_quantizer = _input_quantizer(quantization)
        self.weight = DequantizedWeight(quantization)
        self.bias = None if quantization.bias is None else nn.Parameter(quantization.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.weight(), self.bias)


def _input_quantizer(quantization: LayerQuantization) -> InputQuantizer:
    return InputQuantizer(
        quantization.input_scale,
        quantization.input_zero_point,
        quantization.input_qmin,
        quantization.input_qmax,
    )


def _plain_layer(layer: ElasticQuantLayer, quantization: LayerQuantization) -> nn.Module:
    plain: nn.Module
    if isinstance(layer, ElasticQuantConv2d):
        plain = nn.Conv2d(*conv_arguments(layer))
    else:
        assert isinstance(layer, ElasticQuantLinear)
        plain = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(quantization.float_weight)
        if quantization.bias is not None and plain.bias is not None:
            plain.bias.copy_(quantization.bias)
    return plain


def _float_layer(name: str, layer: ElasticQuantLayer) -> LayerQuantization:
    bias: torch.Tensor | None = getattr(layer, "bias", None)
    return LayerQuantization(
        name=name,
        choice=LayerChoice(32, 32),
        float_weight=layer.weight.detach().float().clone(),
        bias=None if bias is None else bias.detach().float().clone(),
    )


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def build_deploy_model(
    supernet: Supernet, config: SubnetConfig, *, full_precision: bool = False
) -> nn.Module:
    """A plain eval-mode copy of the subnet ``config`` with its current BN statistics.

    Every elastic layer becomes a :class:`DeployConv2d` / :class:`DeployLinear` (or a plain
    float layer where the choice is full precision); the rest of the network is copied as is.
    ``full_precision=True`` makes every layer a plain float layer with its latent weight:
    the FP32 network of the same architecture.

    A joint supernet's subnet is extracted first (:func:`supernet.networks.extract.extract`): the
    deploy model has the chosen architecture only.

    Raises:
        ValueError: ``config`` is not in the space, or a layer cannot be exported.
    """
    if supernet.joint:
        if not full_precision:
            check_exportable(supernet)
        static = _extracted(supernet, config)
        return build_deploy_model(static, _active(static), full_precision=full_precision)
    if full_precision:
        supernet.space.validate(config)
        quantizations = {
            name: _float_layer(name, layer) for name, layer in supernet.elastic_layers().items()
        }
    else:
        quantizations = quantize_layers(supernet, config)
    layers = supernet.elastic_layers()
    # Copy without the elastic layers (their quantizer parameters are large and unused).
    placeholders = {name: nn.Identity() for name in layers}
    originals = {name: layers[name] for name in layers}
    for name, placeholder in placeholders.items():
        _set_submodule(supernet.model, name, placeholder)
    try:
        model = copy.deepcopy(supernet.model)
    finally:
        for name, layer in originals.items():
            _set_submodule(supernet.model, name, layer)
    for name, layer in originals.items():
        quantization = quantizations[name]
        replacement: nn.Module
        if not quantization.quantized:
            replacement = _plain_layer(layer, quantization)
        elif isinstance(layer, ElasticQuantConv2d):
            replacement = DeployConv2d(layer, quantization)
        else:
            replacement = DeployLinear(quantization)
        _set_submodule(model, name, replacement)
    model.to(next(supernet.parameters()).device)
    return model.eval()


def _extracted(supernet: Supernet, config: SubnetConfig) -> Supernet:
    from supernet.networks.extract import extract

    return extract(supernet, config)


def _active(static: Supernet) -> SubnetConfig:
    config = static.active_subnet()
    assert config is not None  # extract() sets the config
    return config
