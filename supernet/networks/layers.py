"""Conv2d and Linear layers whose weight and input quantization follow a settable choice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError
from eqsearch.space import LayerChoice
from supernet.quantizers import ElasticQuantizer, QuantizerSpec, build_quantizer
from supernet.quantizers.base import ConvGeometry, autocast_off
from supernet.quantizers.direction_conv import direction_conv2d
from supernet.quantizers.integer_conv import WeightLevels
from supernet.quantizers.lsq_weights import quantize_weights


class FrozenOperands(NamedTuple):
    """A layer's operands fixed for inference (``inference.frozen_weights``): the weight
    quantized once and the input quantization, valid without autograd for one handle and
    one version of the latent weight."""

    handle: Any
    weight_version: int
    weight: torch.Tensor
    quantize_input: Callable[[torch.Tensor], torch.Tensor]


class ActiveChoice:
    """The active choice of a layer, its quantizer handle and any frozen operands (a plain
    mutable holder). Frozen operands are read only while the handle and the latent weight
    are still the ones they were made from. ``quantized_weight`` is set only during one
    training forward of a supernet that quantized its layers' weights together (see
    :meth:`supernet.networks.elastic.Supernet.forward`)."""

    __slots__ = ("choice", "frozen", "handle", "quantized_weight", "quantized_weight_levels")

    def __init__(self) -> None:
        self.choice: LayerChoice | None = None
        self.handle: Any = None
        self.frozen: FrozenOperands | None = None
        self.quantized_weight: torch.Tensor | None = None
        self.quantized_weight_levels: WeightLevels | None = None

    def frozen_for(self, weight: torch.Tensor) -> FrozenOperands | None:
        """The frozen operands while they still hold: made for the active handle from this
        version of ``weight``, read outside autograd; None otherwise."""
        frozen = self.frozen
        if (
            frozen is not None
            and frozen.handle is self.handle
            and frozen.weight_version == weight._version
            and not torch.is_grad_enabled()
        ):
            return frozen
        return None


class ElasticQuantLayer(nn.Module):
    """Shared behaviour of the elastic layers: the quantizer and the active choice.

    ``set_choice`` validates and stores; ``forward`` only reads the stored handle.
    """

    weight: torch.Tensor
    quantizer: ElasticQuantizer
    active: ActiveChoice
    channels_last = False
    """Conv layers: compute with channels-last operands (see :func:`channels_last`)."""

    def _init_quantization(self, spec: QuantizerSpec) -> None:
        self.quantizer = build_quantizer(self.weight, spec)
        self.active = ActiveChoice()

    def _copy_parameters(self, module: Any, spec: QuantizerSpec) -> None:
        """Take ``module``'s weight (and bias) and a quantizer built by ``spec`` for it."""
        bias = getattr(self, "bias", None)
        with torch.no_grad():
            self.weight.copy_(module.weight)
            if module.bias is not None and bias is not None:
                bias.copy_(module.bias)
        self.quantizer = build_quantizer(self.weight, spec)

    @property
    def choice(self) -> LayerChoice | None:
        """The active choice; None means full precision."""
        return self.active.choice

    def set_choice(self, choice: LayerChoice | None) -> None:
        """Quantize with ``choice`` from now on (None: full precision).

        Raises:
            ValueError: the layer's quantizer does not serve ``choice``.
        """
        if choice is None:
            self.active.choice, self.active.handle = None, None
            return
        if not isinstance(choice, LayerChoice):
            raise InputError(f"set_choice expects a LayerChoice or None; got {choice!r}")
        handle = self.quantizer.resolve(choice)
        self.active.choice, self.active.handle = choice, handle

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the active choice quantizes it (the latent weight when FP)."""
        return self.quantizer.quantize_weight(self.weight, self.active.handle)

    def quantized_operands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (input, weight) pair the layer computes with under its active choice."""
        handle = self.active.handle
        if handle is None:
            return x, self.weight
        if self.active.quantized_weight is not None:  # see weights_quantized_together
            return self.quantizer.quantize_input(x, handle), self.active.quantized_weight
        frozen = self.active.frozen_for(self.weight)
        if frozen is not None:
            return frozen.quantize_input(x), frozen.weight
        return (
            self.quantizer.quantize_input(x, handle),
            self.quantizer.quantize_weight(self.weight, handle),
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, quantizer={self.quantizer.name}, choice={self.active.choice}"
        )


def conv_arguments(conv: nn.Conv2d) -> tuple[Any, ...]:
    """``conv``'s positional ``nn.Conv2d`` arguments (channels, kernel, stride, padding,
    dilation, groups, bias, padding mode): a twin with its geometry takes them."""
    return (
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor with channels-last strides (a view where its memory already is NHWC).

    A conv layer whose model is stored channels-last (``layer.channels_last``, e.g. the
    MobileNetV3 supernets) computes with channels-last operands: fake quantization of a
    tensor with a size-1 dimension (a 1-channel input, a depth-wise or 1×1 weight) returns it
    with NCHW strides, the conv's output would then be NCHW too, and oneDNN's NCHW
    depth-wise convolutions are 2-3x slower on CPUs than channels-last ones.
    """
    # ``contiguous(memory_format=channels_last)`` keeps NCHW strides where a size-1 dimension
    # makes both layouts the same memory (and the conv then picks NCHW); ``to`` sets them,
    # copying only such small tensors (and NCHW ones), never a channels-last activation
    return tensor.to(memory_format=torch.channels_last)


class ElasticQuantConv2d(ElasticQuantLayer, nn.Conv2d):
    """``nn.Conv2d`` with elastic weight and input quantization."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        spec: QuantizerSpec | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,  # type: ignore[arg-type]
            device=device,
            dtype=dtype,
        )
        self._init_quantization(spec or QuantizerSpec())

    @classmethod
    def from_module(cls, conv: nn.Conv2d, spec: QuantizerSpec) -> ElasticQuantConv2d:
        """An elastic twin of ``conv`` with a copy of its parameters."""
        layer = cls(
            *conv_arguments(conv), spec=spec, device=conv.weight.device, dtype=conv.weight.dtype
        )
        layer._copy_parameters(conv, spec)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        handle = self.active.handle
        if handle is not None and torch.is_grad_enabled():
            if not x.requires_grad:
                directions = getattr(self.quantizer, "input_directions", None)
                if directions is not None:
                    return self._forward_constant_input(x, handle, directions)
            elif (geometry := self._zero_padded_geometry()) is not None:
                # training: the quantizer may fuse input, weight and convolution
                return self.quantizer.quantized_conv2d(
                    x,
                    self.weight,
                    self.bias,
                    handle,
                    geometry,
                    quantized_weight=self.active.quantized_weight,
                    quantized_weight_levels=self.active.quantized_weight_levels,
                )
        x, weight = self.quantized_operands(x)
        if self.channels_last:
            x, weight = channels_last(x), channels_last(weight)
        if handle is None:
            return self._conv_forward(x, weight, self.bias)
        with autocast_off(x):  # quantized operands in their own precision
            return self._conv_forward(x, weight, self.bias)

    def _zero_padded_geometry(self) -> ConvGeometry | None:
        """The layer's geometry for the training Functions, which pad with zeros given as
        integers; None for other padding (the layer then runs ``_conv_forward``)."""
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return None
        return ConvGeometry(
            self.stride, self.padding, self.dilation, self.groups, self.channels_last
        )

    def _forward_constant_input(
        self, x: torch.Tensor, handle: Any, directions: Any
    ) -> torch.Tensor:
        # An input without gradient (the images): the input quantizer's parameter gradients
        # come from its derivatives (see LsqQuantizer.input_directions) instead of a
        # backward-data convolution: through weight-gradient convolutions of them where
        # supernet.quantizers.direction_conv applies (zero padding, one group), else through
        # forward convolutions of them.
        x_hat, pairs = directions(x, handle)
        weight = self.active.quantized_weight
        if weight is None:
            weight = self.quantizer.quantize_weight(self.weight, handle)
        geometry = self._zero_padded_geometry()
        if geometry is not None and geometry.groups == 1:
            # the parameters' gradients from the weight gradient's convolution
            return direction_conv2d(x_hat, weight, self.bias, geometry, pairs)
        with autocast_off(x_hat):
            out = self._conv_forward(x_hat, weight, self.bias)
            frozen = weight.detach()
            for direction, parameter in pairs:
                response = self._conv_forward(direction, frozen, None)
                out = out + response * (parameter - parameter.detach())
        return out


class ElasticQuantLinear(ElasticQuantLayer, nn.Linear):
    """``nn.Linear`` with elastic weight and input quantization."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        spec: QuantizerSpec | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quantization(spec or QuantizerSpec())

    @classmethod
    def from_module(cls, linear: nn.Linear, spec: QuantizerSpec) -> ElasticQuantLinear:
        """An elastic twin of ``linear`` with a copy of its parameters."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            spec=spec,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        layer._copy_parameters(linear, spec)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active.handle is None:
            return F.linear(x, self.weight, self.bias)
        x, weight = self.quantized_operands(x)
        with autocast_off(x):  # quantized operands in their own precision
            return F.linear(x, weight, self.bias)


ELASTIC_LAYER_TYPES = (ElasticQuantConv2d, ElasticQuantLinear)


@contextmanager
def weights_quantized_together(layers: Iterable[ElasticQuantLayer]) -> Iterator[None]:
    """Inside: the conv and linear layers whose quantizers allow it read their weights
    quantized by one shared autograd node
    (:func:`supernet.quantizers.lsq_weights.quantize_weights`), made on entering; for one
    training forward (the weights must not change inside).

    Values and gradients are those of each layer quantizing its own weight; the step saves a
    kernel call per layer each way (see :mod:`supernet.quantizers.lsq_weights`).
    """
    chosen: list[ElasticQuantLayer] = []
    entries = []
    for layer in layers:
        handle = layer.active.handle
        if handle is None or not isinstance(layer, ELASTIC_LAYER_TYPES):
            continue  # full precision, or a layer that reads no quantized_weight
        entry = layer.quantizer.shared_weight_entry(layer.weight, handle)
        if entry is not None:
            chosen.append(layer)
            entries.append(entry)
    if len(entries) < 2:  # nothing to share
        yield
        return
    for layer, weight, levels in zip(chosen, *quantize_weights(entries), strict=True):
        layer.active.quantized_weight = weight
        layer.active.quantized_weight_levels = levels
    try:
        yield
    finally:
        for layer in chosen:
            layer.active.quantized_weight = None
            layer.active.quantized_weight_levels = None
