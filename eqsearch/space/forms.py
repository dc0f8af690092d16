"""Quantization forms and the quantization of one layer: bit widths, granularity, symmetry."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import numpy as np

from eqsearch.errors import InputError

T = TypeVar("T")

FULL_PRECISION_BITS = 32
"""Bit width that stands for "not quantized" (a layer pinned to full precision)."""

MIN_BITS = 2
MAX_BITS = 16


class Granularity(str, Enum):
    """Weight quantization granularity: one step size per output channel or per tensor."""

    CHANNEL = "channel"
    TENSOR = "tensor"

    def __str__(self) -> str:
        return self.value


def to_granularity(value: object, field_name: str) -> Granularity:
    try:
        return Granularity(value)
    except ValueError:
        raise InputError(
            f"{field_name} must be one of 'channel', 'tensor'; got {value!r}"
        ) from None


def require_bool(value: object, field_name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{field_name} must be True or False; got {value!r}")
    return bool(value)


def require_tuple_of(
    values: Iterable[Any], kind: type[T], field_name: str, empty: str
) -> tuple[T, ...]:
    """``values`` as a tuple of ``kind`` instances; an InputError naming the first that is
    not one, or saying ``field_name`` "must hold ``empty``" when there is none."""
    items = tuple(values)
    if not items:
        raise InputError(f"{field_name} must hold {empty}")
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise InputError(f"{field_name}[{index}] must be a {kind.__name__}; got {item!r}")
    return items


def require_bits(value: object, field_name: str, *, allow_full_precision: bool) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{field_name} must be an integer bit width; got {value!r}")
    bits = int(value)
    if allow_full_precision and bits == FULL_PRECISION_BITS:
        return bits
    if not MIN_BITS <= bits <= MAX_BITS:
        allowed = f"{MIN_BITS}..{MAX_BITS}"
        if allow_full_precision:
            allowed += f" or {FULL_PRECISION_BITS} (full precision)"
        raise InputError(f"{field_name} must be in {allowed}; got {bits}")
    return bits


@dataclass(frozen=True, init=False)
class QuantForm:
    """How a layer is quantized, apart from its bit widths.

    Args:
        w_granularity: ``"channel"`` (one step size per output channel) or ``"tensor"``
            (a :class:`Granularity` or its string value).
        w_symmetric: weights with a zero point fixed at 0 (True) or a learned one (False).
        a_symmetric: input activations with a zero point fixed at 0 (True) or learned (False).
    """

    w_granularity: Granularity
    w_symmetric: bool
    a_symmetric: bool

    def __init__(
        self,
        w_granularity: Granularity | str = Granularity.CHANNEL,
        w_symmetric: bool = True,
        a_symmetric: bool = True,
    ) -> None:
        object.__setattr__(
            self, "w_granularity", to_granularity(w_granularity, "QuantForm.w_granularity")
        )
        object.__setattr__(self, "w_symmetric", require_bool(w_symmetric, "QuantForm.w_symmetric"))
        object.__setattr__(self, "a_symmetric", require_bool(a_symmetric, "QuantForm.a_symmetric"))

    @property
    def per_channel(self) -> bool:
        """Whether weights have one step size per output channel."""
        return self.w_granularity is Granularity.CHANNEL

    def __str__(self) -> str:
        weight = "sym" if self.w_symmetric else "asym"
        activation = "sym" if self.a_symmetric else "asym"
        return f"{self.w_granularity.value}-{weight}-{activation}"

    @classmethod
    def parse(cls, text: str) -> QuantForm:
        """Parse the ``str()`` form, e.g. ``"channel-sym-asym"``.

        The three parts are the weight granularity (``channel``/``tensor``), the weight
        symmetry and the activation symmetry (``sym``/``asym``).
        """
        parts = text.strip().lower().split("-")
        symmetry = {"sym": True, "asym": False}
        if (
            len(parts) != 3
            or parts[0] not in ("channel", "tensor")
            or parts[1] not in symmetry
            or parts[2] not in symmetry
        ):
            raise InputError(
                f"a quantization form is written GRANULARITY-WSYM-ASYM with GRANULARITY in "
                f"channel|tensor and WSYM/ASYM in sym|asym (e.g. 'channel-sym-sym'); got {text!r}"
            )
        return cls(
            to_granularity(parts[0], "form granularity"), symmetry[parts[1]], symmetry[parts[2]]
        )


ALL_FORMS: tuple[QuantForm, ...] = tuple(
    QuantForm(granularity, w_symmetric, a_symmetric)
    for granularity, w_symmetric, a_symmetric in itertools.product(
        (Granularity.CHANNEL, Granularity.TENSOR), (True, False), (True, False)
    )
)
"""Every quantization form, in the canonical order used by form indices."""

FORM_INDEX = {form: index for index, form in enumerate(ALL_FORMS)}


@dataclass(frozen=True)
class LayerChoice:
    """The quantization of one layer: weight bits, input-activation bits and form.

    A bit width of ``FULL_PRECISION_BITS`` (32) means the layer is not quantized; only layers
    pinned to full precision take it.
    """

    w_bits: int
    a_bits: int
    form: QuantForm = field(default_factory=QuantForm)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "w_bits",
            require_bits(self.w_bits, "LayerChoice.w_bits", allow_full_precision=True),
        )
        object.__setattr__(
            self,
            "a_bits",
            require_bits(self.a_bits, "LayerChoice.a_bits", allow_full_precision=True),
        )
        if not isinstance(self.form, QuantForm):
            raise InputError(f"LayerChoice.form must be a QuantForm; got {self.form!r}")

    @property
    def full_precision(self) -> bool:
        """Whether the layer runs unquantized."""
        return self.w_bits == FULL_PRECISION_BITS

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``{"w_bits": 4, "a_bits": 4, "form": "channel-sym-sym"}``."""
        return {"w_bits": self.w_bits, "a_bits": self.a_bits, "form": str(self.form)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerChoice:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not {"w_bits", "a_bits", "form"} <= set(data):
            raise InputError(f"a layer choice needs the keys w_bits, a_bits, form; got {data!r}")
        form = data["form"]
        parsed = QuantForm.parse(form) if isinstance(form, str) else QuantForm(**form)
        return cls(data["w_bits"], data["a_bits"], parsed)
