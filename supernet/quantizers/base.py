"""What every elastic quantizer provides, and the spec a layer builds one from."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError
from eqsearch.space import (
    FULL_PRECISION_BITS,
    MAX_BITS,
    MIN_BITS,
    Granularity,
    LayerChoice,
    QuantForm,
)
from supernet.quantizers.clipping import MAX_SEARCH_VALUES, weighted_sample

if TYPE_CHECKING:
    from supernet.quantizers.integer_conv import WeightLevels
    from supernet.quantizers.lsq_weights import WeightEntry


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a quantizer computes in for a tensor of ``dtype``: at least float32 (a
    bfloat16 or float16 activation under autocast is quantized from its exact float32 value:
    its own arithmetic would round the levels and merge thresholds)."""
    return torch.promote_types(dtype, torch.float32)


@contextmanager
def _without_tf32() -> Iterator[None]:
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def autocast_off(x: torch.Tensor) -> AbstractContextManager[Any]:
    """A context in which operands on ``x``'s device compute in their own precision:
    autocast off where it is on, and on CUDA without TF32 (cuDNN's default for float32
    convolutions, which rounds the operands to 11 significant bits: quantized operands
    ``s·q`` would leave their grids). Nothing where neither applies (entering a context
    costs more than a small layer's convolution)."""
    device_type = x.device.type
    tf32 = (
        device_type == "cuda"
        and torch.backends.cudnn.allow_tf32
        and not torch.compiler.is_compiling()
    )
    if not torch.is_autocast_enabled(device_type):
        return _without_tf32() if tf32 else nullcontext()
    stack = ExitStack()
    stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
    if tf32:
        stack.enter_context(_without_tf32())
    return stack


class ConvGeometry(NamedTuple):
    """The arguments of ``F.conv2d`` besides its tensors (zero padding, as integers)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    channels_last: bool = False

    def convolve(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``F.conv2d(x, weight, bias)`` with this geometry (operands taken as they are)."""
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def convolve_as_is(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`convolve` in the operands' own dtype even under autocast (an autograd
        Function whose backward convolves the saved operands needs an output gradient of
        their dtype). Autocast is turned off only where it is on: entering its context costs
        more than a small layer's convolution."""
        with autocast_off(x):
            return self.convolve(x, weight, bias)

    def convolution_backward(
        self,
        grad_out: torch.Tensor,
        x: torch.Tensor,
        weight: torch.Tensor,
        has_bias: bool,
        output_mask: list[bool],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (input, weight, bias) gradients of :meth:`convolve` for the output gradient
        ``grad_out``: those ``output_mask`` asks for (None in the others' places), in the
        operands' own precision (see :func:`autocast_off`)."""
        with autocast_off(x):
            return torch.ops.aten.convolution_backward(  # type: ignore[no-any-return]
                grad_out,
                x,
                weight,
                [weight.shape[0]] if has_bias else None,
                self.stride,
                self.padding,
                self.dilation,
                False,
                [0] * len(self.stride),
                self.groups,
                output_mask,
            )


@dataclass(frozen=True)
class QuantizerSpec:
    """The choices one layer's quantizer must serve.

    Args:
        name: registered quantizer name (``"lsq"``, ``"n2uq"``).
        w_bits: weight bit widths; ``(32,)`` makes a full-precision (pinned) layer.
        a_bits: activation bit widths; ``(32,)`` for a full-precision layer.
        granularities, w_symmetries, a_symmetries: the forms to serve.
    """

    name: str = "lsq"
    w_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    a_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    granularities: tuple[Granularity, ...] = (Granularity.CHANNEL, Granularity.TENSOR)
    w_symmetries: tuple[bool, ...] = (True, False)
    a_symmetries: tuple[bool, ...] = (True, False)

    def __post_init__(self) -> None:
        for field_name in ("w_bits", "a_bits"):
            values = tuple(sorted(set(getattr(self, field_name))))
            if not values or any(
                not (MIN_BITS <= b <= MAX_BITS or b == FULL_PRECISION_BITS) for b in values
            ):
                raise InputError(
                    f"QuantizerSpec.{field_name} must hold bit widths in {MIN_BITS}..{MAX_BITS} "
                    f"or {FULL_PRECISION_BITS}; got {getattr(self, field_name)!r}"
                )
            object.__setattr__(self, field_name, values)
        if (FULL_PRECISION_BITS in self.w_bits) != (FULL_PRECISION_BITS in self.a_bits):
            raise InputError("QuantizerSpec: full precision (32) must be in w_bits and a_bits")
        object.__setattr__(
            self, "granularities", tuple(Granularity(g) for g in dict.fromkeys(self.granularities))
        )
        object.__setattr__(self, "w_symmetries", tuple(dict.fromkeys(self.w_symmetries)))
        object.__setattr__(self, "a_symmetries", tuple(dict.fromkeys(self.a_symmetries)))
        if not (self.granularities and self.w_symmetries and self.a_symmetries):
            raise InputError("QuantizerSpec needs at least one granularity and symmetry of each")

    @property
    def forms(self) -> tuple[QuantForm, ...]:
        """Every form the spec serves."""
        return tuple(
            QuantForm(g, ws, as_)
            for g, ws, as_ in itertools.product(
                self.granularities, self.w_symmetries, self.a_symmetries
            )
        )

    @property
    def space_choices(self) -> dict[str, tuple[Any, ...]]:
        """The bit widths and forms, as the keyword arguments of an elastic space."""
        return {
            "w_bits": self.w_bits,
            "a_bits": self.a_bits,
            "granularities": self.granularities,
            "w_symmetries": self.w_symmetries,
            "a_symmetries": self.a_symmetries,
        }

    def pinned(self, w_bits: int, a_bits: int) -> QuantizerSpec:
        """The same forms at fixed bits (a pinned layer)."""
        return QuantizerSpec(
            self.name,
            (w_bits,),
            (a_bits,),
            self.granularities,
            self.w_symmetries,
            self.a_symmetries,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "name": self.name,
            "w_bits": list(self.w_bits),
            "a_bits": list(self.a_bits),
            "granularities": [g.value for g in self.granularities],
            "w_symmetries": list(self.w_symmetries),
            "a_symmetries": list(self.a_symmetries),
        }


class QuantParams(NamedTuple):
    """The effective (detached) quantization parameters of one choice, e.g. for export."""

    w_step: torch.Tensor
    w_zero_point: torch.Tensor
    w_qmin: int
    w_qmax: int
    a_step: torch.Tensor
    a_zero_point: torch.Tensor
    a_qmin: int
    a_qmax: int


@dataclass(frozen=True)
class CalibrationData:
    """What :meth:`ElasticQuantizer.calibrate` initialises a quantizer from (see its Args),
    with the generator its seed seeds."""

    weight: torch.Tensor
    inputs: torch.Tensor
    input_min: float
    input_max: float
    input_weights: torch.Tensor | None
    generator: torch.Generator

    def input_sample(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """A weighted sample of the inputs as one group, its weights, and the full inputs'
        range as :func:`~supernet.quantizers.clipping.search_step_sizes` takes them."""
        sample, weights = weighted_sample(
            self.inputs.detach().float().reshape(1, -1),
            MAX_SEARCH_VALUES,
            self.generator,
            weights=None if self.input_weights is None else self.input_weights.reshape(1, -1),
        )
        value_range = (
            torch.tensor([float(self.input_min)], device=sample.device),
            torch.tensor([float(self.input_max)], device=sample.device),
        )
        return sample, weights, value_range


class ElasticQuantizer(nn.Module):
    """Quantizes one layer's weight and input for every choice of its :class:`QuantizerSpec`.

    Subclasses create every learnable parameter in ``__init__`` (from the weight's shape), so
    optimizers and ``load_state_dict`` work before any data has been seen; :meth:`calibrate`
    initialises them from data once. ``resolve`` turns a choice into a handle that
    ``quantize_weight``/``quantize_input`` read, so ``forward`` does no lookups.
    """

    name: ClassVar[str] = ""
    calibrated: torch.Tensor
    exportable: ClassVar[bool] = False
    """Whether :meth:`quant_params` gives the uniform affine grids of every choice, so that
    export writes the layer as a QuantizeLinear/DequantizeLinear pair."""
    export_refusal: ClassVar[str] = "it exposes no uniform affine quantization parameters"
    """Why a quantizer that does not export cannot (said by the export error)."""

    def __init__(self, weight: torch.Tensor, spec: QuantizerSpec) -> None:
        super().__init__()
        unsupported = [form for form in spec.forms if not self.supports(form)]
        if unsupported:
            raise InputError(
                f"quantizer {self.name!r} cannot express the forms "
                f"{', '.join(map(str, unsupported))}; it supports {self.describe_forms()}"
            )
        self.spec = spec
        self._allowed = frozenset(
            LayerChoice(w, a, form)
            for w in spec.w_bits
            for a in spec.a_bits
            for form in spec.forms
            if (w == FULL_PRECISION_BITS) == (a == FULL_PRECISION_BITS)
        )
        self._handles: dict[LayerChoice, Any] = {}

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> ElasticQuantizer:
        self._handles.clear()  # parameters may be new objects after a device/dtype move
        return super()._apply(fn, *args, **kwargs)  # type: ignore[no-any-return]

    @property
    def weight_bits(self) -> list[int]:
        """The quantized weight bit widths this quantizer serves (full precision excluded)."""
        return [b for b in self.spec.w_bits if b != FULL_PRECISION_BITS]

    @property
    def input_bits(self) -> list[int]:
        """The quantized activation bit widths this quantizer serves."""
        return [b for b in self.spec.a_bits if b != FULL_PRECISION_BITS]

    supported_granularities: ClassVar[tuple[Granularity, ...]] = (
        Granularity.CHANNEL,
        Granularity.TENSOR,
    )
    supported_w_symmetries: ClassVar[tuple[bool, ...]] = (True, False)
    supported_a_symmetries: ClassVar[tuple[bool, ...]] = (True, False)

    @classmethod
    def supports(cls, form: QuantForm) -> bool:
        """Whether the quantizer can express ``form``."""
        return (
            form.w_granularity in cls.supported_granularities
            and form.w_symmetric in cls.supported_w_symmetries
            and form.a_symmetric in cls.supported_a_symmetries
        )

    @classmethod
    def describe_forms(cls) -> str:
        """Human-readable list of the forms the quantizer supports."""

        def symmetry(values: tuple[bool, ...]) -> str:
            return "/".join("sym" if value else "asym" for value in values)

        return (
            f"weight granularity {'/'.join(g.value for g in cls.supported_granularities)}, "
            f"weight symmetry {symmetry(cls.supported_w_symmetries)}, "
            f"activation symmetry {symmetry(cls.supported_a_symmetries)}"
        )

    def check(self, choice: LayerChoice) -> None:
        """Raise ValueError if the layer cannot take ``choice``."""
        if choice not in self._allowed:
            if choice.form not in self.spec.forms:
                raise InputError(
                    f"form {choice.form} is not served by this layer "
                    f"(forms: {', '.join(map(str, self.spec.forms))})"
                )
            raise InputError(
                f"bits w{choice.w_bits}/a{choice.a_bits} are not served by this layer "
                f"(weight bits {self.spec.w_bits}, activation bits {self.spec.a_bits})"
            )

    def resolve(self, choice: LayerChoice) -> Any:
        """A handle for ``choice`` (None when it is full precision)."""
        raise NotImplementedError

    def _build_handle(self, choice: LayerChoice) -> Any:
        """A new handle for the checked, quantized ``choice`` (see :meth:`_cached_handle`)."""
        raise NotImplementedError

    def _cached_handle(self, choice: LayerChoice) -> Any:
        """The handle :meth:`_build_handle` makes for ``choice`` (None at full precision),
        checked and built once per choice (``set_subnet`` is on hot paths); forgotten when
        the parameters move."""
        try:
            return self._handles[choice]
        except KeyError:
            pass
        self.check(choice)
        handle = None if choice.full_precision else self._build_handle(choice)
        self._handles[choice] = handle
        return handle

    def quantize_weight(self, weight: torch.Tensor, handle: Any) -> torch.Tensor:
        """The weight as ``handle``'s choice quantizes it (fake-quantized, float)."""
        raise NotImplementedError

    def quantize_input(self, x: torch.Tensor, handle: Any) -> torch.Tensor:
        """The input activation as ``handle``'s choice quantizes it."""
        raise NotImplementedError

    def frozen_input_quantizer(self, handle: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`quantize_input` for ``handle``, for inputs while the parameters stay as they
        are (a quantizer may compute its constants once; this default does not)."""
        return partial(self.quantize_input, handle=handle)

    def shared_weight_entry(self, weight: torch.Tensor, handle: Any) -> WeightEntry | None:
        """The entry that quantizes ``weight`` under ``handle`` if it may be quantized
        together with other layers' weights in one node (see
        :mod:`supernet.quantizers.lsq_weights`); None (this default): on its own."""
        return None

    def quantized_conv2d(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        handle: Any,
        geometry: ConvGeometry,
        *,
        quantized_weight: torch.Tensor | None = None,
        quantized_weight_levels: WeightLevels | None = None,
    ) -> torch.Tensor:
        """``F.conv2d`` of the quantized input and weight (what a conv layer computes).

        Quantizers may fuse the three into one autograd node for training (LSQ+ does); this
        default composes them. ``quantized_weight``: the weight quantized already (from the
        node of :meth:`shared_weight_entry`), used as it is, with (for a symmetric one) its
        levels, which a fused node may convolve on the integer grids; this default ignores
        them.
        """
        x = self.quantize_input(x, handle)
        if quantized_weight is None:
            weight = self.quantize_weight(weight, handle)
        else:
            weight = quantized_weight
        if geometry.channels_last:
            x = x.to(memory_format=torch.channels_last)
            weight = weight.to(memory_format=torch.channels_last)
        # quantized operands in their own precision, never rounded by autocast
        return geometry.convolve_as_is(x, weight, bias)

    @torch.no_grad()
    def calibrate(
        self,
        weight: torch.Tensor,
        inputs: torch.Tensor,
        input_min: float,
        input_max: float,
        *,
        input_weights: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        """Initialise every (bits, form) entry from the weight and a sample of inputs.

        Args:
            weight: the layer's latent full-precision weight.
            inputs: a sample of the layer's input activations (any shape).
            input_min, input_max: the extremes of the full inputs the sample came from.
            input_weights: weights of the ``inputs`` values (a weighted sample whose weighted
                means estimate means over all inputs), or None.
            seed: seeds whatever random subsample of the weight or the inputs it draws.
        """
        self._handles.clear()
        generator = torch.Generator().manual_seed(seed)
        self._calibrate(
            CalibrationData(weight, inputs, input_min, input_max, input_weights, generator)
        )
        self.calibrated.fill_(True)

    def _calibrate(self, data: CalibrationData) -> None:
        """Initialise the entries from ``data`` (under no_grad; see :meth:`calibrate`)."""
        raise NotImplementedError

    def inherit(self, from_bits: int, to_bits: int) -> None:
        """Initialise ``to_bits`` entries from ``from_bits`` ones (progressive schedule)."""
        raise NotImplementedError

    def parameters_for(self, choice: LayerChoice) -> list[nn.Parameter]:
        """The learnable quantizer parameters ``choice`` reads (for tests and ablations)."""
        raise NotImplementedError

    def quant_params(self, choice: LayerChoice) -> QuantParams | None:
        """Effective steps, integer zero points and grids of ``choice`` (None for full
        precision); only an :attr:`exportable` quantizer has them."""
        raise NotImplementedError
