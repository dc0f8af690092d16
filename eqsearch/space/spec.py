"""One description of a supernet's elastic space: quantizer, bits, forms, pinning, architecture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from eqsearch.errors import InputError
from eqsearch.space import (
    FULL_PRECISION_BITS,
    MAX_BITS,
    MIN_BITS,
    Granularity,
)

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)
FIRST_LAST_CHOICES = "'W/A' bits such as '8/8', 'fp' (full precision) or 'elastic'"

SPACE_FLAGS: dict[str, str] = {
    "quantizer": "quantizer",
    "w_bits": "w_bits",
    "a_bits": "a_bits",
    "granularity": "granularities",
    "w_symmetry": "w_symmetries",
    "a_symmetry": "a_symmetries",
    "first_last": "first_last",
}
"""``eqsearch train`` flag destinations that set a :class:`SpaceSpec` field, by field."""


def parse_first_last(text: str) -> tuple[int, int] | None:
    """Parse the first/last-layer policy: ``"8/8"`` → (8, 8), ``"fp"`` → (32, 32),
    ``"elastic"`` → None (searched like every other layer)."""
    value = str(text).strip().lower()
    if value == "elastic":
        return None
    if value in ("fp", "full", "full-precision"):
        return (FULL_PRECISION_BITS, FULL_PRECISION_BITS)
    parts = value.split("/")
    try:
        w_bits, a_bits = (int(p) for p in parts) if len(parts) == 2 else (int(value),) * 2
    except ValueError:
        raise InputError(f"first_last must be {FIRST_LAST_CHOICES}; got {text!r}") from None
    for bits in (w_bits, a_bits):
        if not MIN_BITS <= bits <= MAX_BITS:
            raise InputError(f"first_last bits must be in {MIN_BITS}..{MAX_BITS}; got {text!r}")
    return (w_bits, a_bits)


def _bits(values: object, name: str) -> tuple[int, ...]:
    items = tuple(values) if isinstance(values, (list, tuple)) else None
    if not items or any(
        isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS
        for b in items
    ):
        raise InputError(f"{name} must be bit widths in {MIN_BITS}..{MAX_BITS}; got {values!r}")
    return tuple(sorted(set(items)))


def _optional_tuple(values: object, name: str) -> tuple[Any, ...] | None:
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or not values:
        raise InputError(f"{name} must be a non-empty list or None; got {values!r}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class SpaceSpec:
    """What a supernet serves, spelled once: the supernet is built from it, the training
    config holds it, the train flags set it, checkpoints store it and rebuild from it.

    Args:
        quantizer: registered quantizer name (``"lsq"``, ``"n2uq"``).
        w_bits, a_bits: elastic bit widths of weights and activations (2..16).
        granularities: weight granularities (``"channel"``, ``"tensor"``); None: every one the
            quantizer supports (resolved when the supernet is built).
        w_symmetries, a_symmetries: symmetries (True = symmetric); None as above.
        first_last: first and last layers: pinned bits (``"8/8"``), ``"fp"`` or ``"elastic"``.
        architecture: choice sets of an elastic-architecture model, by the model's option
            name (``{"depths": (2, 3, 4), "expands": (3, 4, 6), "kernels": (3, 5, 7)}``);
            empty for a fixed architecture. The model turns them into the space's
            architecture genes.
    """

    quantizer: str = "lsq"
    w_bits: tuple[int, ...] = DEFAULT_BITS
    a_bits: tuple[int, ...] = DEFAULT_BITS
    granularities: tuple[str, ...] | None = None
    w_symmetries: tuple[bool, ...] | None = None
    a_symmetries: tuple[bool, ...] | None = None
    first_last: str = "8/8"
    architecture: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.quantizer, str) or not self.quantizer:
            raise InputError(f"quantizer must be a registered name; got {self.quantizer!r}")
        object.__setattr__(self, "w_bits", _bits(self.w_bits, "w_bits"))
        object.__setattr__(self, "a_bits", _bits(self.a_bits, "a_bits"))
        granularities = _optional_tuple(self.granularities, "granularities")
        if granularities is not None:
            try:
                granularities = tuple(Granularity(g).value for g in granularities)
            except ValueError:
                raise InputError(
                    f"granularities must be among 'channel', 'tensor'; got {self.granularities!r}"
                ) from None
        object.__setattr__(self, "granularities", granularities)
        for name in ("w_symmetries", "a_symmetries"):
            values = _optional_tuple(getattr(self, name), name)
            if values is not None and not all(isinstance(v, bool) for v in values):
                raise InputError(f"{name} must hold True/False; got {getattr(self, name)!r}")
            object.__setattr__(self, name, values)
        if not isinstance(self.first_last, str):
            raise InputError(f"first_last must be {FIRST_LAST_CHOICES}; got {self.first_last!r}")
        parse_first_last(self.first_last)
        object.__setattr__(self, "architecture", _architecture(self.architecture))

    @property
    def pin(self) -> tuple[int, int] | None:
        """The first/last layers' pinned ``(w_bits, a_bits)``, or None when searched."""
        return parse_first_last(self.first_last)

    @property
    def architecture_options(self) -> dict[str, tuple[int, ...]]:
        """The architecture choice sets as a dict of model options."""
        return dict(self.architecture)

    def resolved(
        self,
        granularities: Sequence[str],
        w_symmetries: Sequence[bool],
        a_symmetries: Sequence[bool],
    ) -> SpaceSpec:
        """The spec with every form left at None set to what the quantizer supports."""
        return replace(
            self,
            granularities=self.granularities or tuple(Granularity(g).value for g in granularities),
            w_symmetries=self.w_symmetries or tuple(w_symmetries),
            a_symmetries=self.a_symmetries or tuple(a_symmetries),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples as lists; ``architecture`` as a dict, only when set)."""
        data = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if key != "architecture"
        }
        if self.architecture:
            data["architecture"] = {name: list(values) for name, values in self.architecture}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpaceSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise InputError(f"a space description is a JSON object; got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown space field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
        }
        return cls(**values)

    def describe(self) -> str:
        """One line for logs."""
        text = (
            f"{self.quantizer}, W bits {self.w_bits}, A bits {self.a_bits}, first/last "
            f"{self.first_last}"
        )
        if self.architecture:
            text += ", " + ", ".join(f"{k} {v}" for k, v in self.architecture)
        return text


def _architecture(value: object) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if isinstance(value, Mapping):
        items: list[Any] = list(value.items())
    elif isinstance(value, (tuple, list)):
        items = list(value)
    else:
        raise InputError(f"architecture must map option names to choices; got {value!r}")
    result: dict[str, tuple[int, ...]] = {}
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
            raise InputError(f"architecture must map option names to choices; got {value!r}")
        name, choices = item
        if (
            not isinstance(choices, (tuple, list))
            or not choices
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
        ):
            raise InputError(f"architecture[{name!r}] must be a list of integers; got {choices!r}")
        result[name] = tuple(sorted(set(choices)))
    return tuple(sorted(result.items()))
