"""The elastic quantization space: quantization forms, per-layer choices, subnets, genomes."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

FULL_PRECISION_BITS = 32
"""Bit width that stands for "not quantized" (a layer pinned to full precision)."""

MIN_BITS = 2
MAX_BITS = 16

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FormsMode = Literal["global", "per_layer"]


class Granularity(str, Enum):
    """Weight quantization granularity: one step size per output channel or per tensor."""

    CHANNEL = "channel"
    TENSOR = "tensor"

    def __str__(self) -> str:
        return self.value


def _granularity(value: object, field_name: str) -> Granularity:
    try:
        return Granularity(value)
    except ValueError:
        raise ValueError(
            f"{field_name} must be one of 'channel', 'tensor'; got {value!r}"
        ) from None


def _require_bool(value: object, field_name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field_name} must be True or False; got {value!r}")
    return bool(value)


def _require_bits(value: object, field_name: str, *, allow_full_precision: bool) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{field_name} must be an integer bit width; got {value!r}")
    bits = int(value)
    if allow_full_precision and bits == FULL_PRECISION_BITS:
        return bits
    if not MIN_BITS <= bits <= MAX_BITS:
        allowed = f"{MIN_BITS}..{MAX_BITS}"
        if allow_full_precision:
            allowed += f" or {FULL_PRECISION_BITS} (full precision)"
        raise ValueError(f"{field_name} must be in {allowed}; got {bits}")
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
            self, "w_granularity", _granularity(w_granularity, "QuantForm.w_granularity")
        )
        object.__setattr__(self, "w_symmetric", _require_bool(w_symmetric, "QuantForm.w_symmetric"))
        object.__setattr__(self, "a_symmetric", _require_bool(a_symmetric, "QuantForm.a_symmetric"))

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
            raise ValueError(
                f"a quantization form is written GRANULARITY-WSYM-ASYM with GRANULARITY in "
                f"channel|tensor and WSYM/ASYM in sym|asym (e.g. 'channel-sym-sym'); got {text!r}"
            )
        return cls(
            _granularity(parts[0], "form granularity"), symmetry[parts[1]], symmetry[parts[2]]
        )


ALL_FORMS: tuple[QuantForm, ...] = tuple(
    QuantForm(granularity, w_symmetric, a_symmetric)
    for granularity, w_symmetric, a_symmetric in itertools.product(
        (Granularity.CHANNEL, Granularity.TENSOR), (True, False), (True, False)
    )
)
"""Every quantization form, in the canonical order used by form indices."""

_FORM_INDEX = {form: index for index, form in enumerate(ALL_FORMS)}


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
            _require_bits(self.w_bits, "LayerChoice.w_bits", allow_full_precision=True),
        )
        object.__setattr__(
            self,
            "a_bits",
            _require_bits(self.a_bits, "LayerChoice.a_bits", allow_full_precision=True),
        )
        if not isinstance(self.form, QuantForm):
            raise ValueError(f"LayerChoice.form must be a QuantForm; got {self.form!r}")

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
            raise ValueError(f"a layer choice needs the keys w_bits, a_bits, form; got {data!r}")
        form = data["form"]
        parsed = QuantForm.parse(form) if isinstance(form, str) else QuantForm(**form)
        return cls(data["w_bits"], data["a_bits"], parsed)


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet of an elastic space: a :class:`LayerChoice` per layer, in space order."""

    choices: tuple[LayerChoice, ...]

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise ValueError("SubnetConfig.choices must hold one LayerChoice per layer; got none")
        for index, choice in enumerate(choices):
            if not isinstance(choice, LayerChoice):
                raise ValueError(
                    f"SubnetConfig.choices[{index}] must be a LayerChoice; got {choice!r}"
                )
        object.__setattr__(self, "choices", choices)

    def __len__(self) -> int:
        return len(self.choices)

    def __iter__(self) -> Iterator[LayerChoice]:
        return iter(self.choices)

    @property
    def uniform_form(self) -> QuantForm | None:
        """The form shared by every layer, or None when layers differ."""
        forms = {choice.form for choice in self.choices}
        return forms.pop() if len(forms) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict ``{"choices": [...]}``."""
        return {"choices": [choice.to_dict() for choice in self.choices]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetConfig:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list):
            raise ValueError("a subnet config is a JSON object with a list under 'choices'")
        return cls(tuple(LayerChoice.from_dict(item) for item in data["choices"]))

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SubnetConfig:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"a subnet config must be JSON: {error}") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        weights = ",".join(str(choice.w_bits) for choice in self.choices)
        activations = ",".join(str(choice.a_bits) for choice in self.choices)
        form = self.uniform_form
        return f"W[{weights}] A[{activations}] {form if form else 'mixed forms'}"


LAYER_KINDS = ("conv", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """What the search and the cost models know of one quantizable layer.

    Args:
        name: module path in the model (``"layer1.0.conv1"``).
        kind: ``"conv"`` or ``"linear"``.
        n_params: number of weight elements.
        macs: multiply-accumulates per input sample.
        n_inputs: input activation elements per sample.
        out_channels: output channels (number of per-channel step sizes).
        pinned: ``(w_bits, a_bits)`` the layer is fixed to, ``(32, 32)`` for full precision,
            or None when the search chooses its bits.
    """

    name: str
    kind: str
    n_params: int
    macs: int
    n_inputs: int
    out_channels: int
    pinned: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"LayerSpec.name must be a non-empty string; got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"LayerSpec.kind must be one of {LAYER_KINDS}; got {self.kind!r}")
        for name in ("n_params", "macs", "n_inputs", "out_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"LayerSpec.{name} must be a positive integer; got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.pinned is not None:
            pinned = tuple(self.pinned)
            if len(pinned) != 2:
                raise ValueError(
                    f"LayerSpec.pinned must be (w_bits, a_bits) or None; got {self.pinned!r}"
                )
            w_bits = _require_bits(pinned[0], "LayerSpec.pinned w_bits", allow_full_precision=True)
            a_bits = _require_bits(pinned[1], "LayerSpec.pinned a_bits", allow_full_precision=True)
            if (w_bits == FULL_PRECISION_BITS) != (a_bits == FULL_PRECISION_BITS):
                raise ValueError(
                    "LayerSpec.pinned: full precision (32) must apply to weights and "
                    f"activations together; got {pinned}"
                )
            object.__setattr__(self, "pinned", (w_bits, a_bits))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return {
            "name": self.name,
            "kind": self.kind,
            "n_params": self.n_params,
            "macs": self.macs,
            "n_inputs": self.n_inputs,
            "out_channels": self.out_channels,
            "pinned": list(self.pinned) if self.pinned is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """Inverse of :meth:`to_dict`."""
        pinned = data.get("pinned")
        return cls(
            name=data["name"],
            kind=data["kind"],
            n_params=data["n_params"],
            macs=data["macs"],
            n_inputs=data["n_inputs"],
            out_channels=data["out_channels"],
            pinned=(int(pinned[0]), int(pinned[1])) if pinned is not None else None,
        )


def _bits_tuple(values: Iterable[object], field_name: str) -> tuple[int, ...]:
    bits = sorted({_require_bits(v, field_name, allow_full_precision=False) for v in values})
    if not bits:
        raise ValueError(f"{field_name} must hold at least one bit width")
    return tuple(bits)


def _unique_tuple(values: Iterable[Any], field_name: str) -> tuple[Any, ...]:
    unique = tuple(dict.fromkeys(values))
    if not unique:
        raise ValueError(f"{field_name} must hold at least one value")
    return unique


@dataclass(frozen=True)
class ElasticSpace:
    """The set of subnets a supernet serves.

    Args:
        layers: every quantizable layer, in execution order.
        w_bits: weight bit widths the elastic layers may take.
        a_bits: activation bit widths the elastic layers may take.
        granularities: weight granularities (``"channel"``, ``"tensor"``).
        w_symmetries: weight symmetries (True = symmetric).
        a_symmetries: activation symmetries (True = symmetric).
    """

    layers: tuple[LayerSpec, ...]
    w_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    a_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    granularities: tuple[Granularity, ...] = (Granularity.CHANNEL, Granularity.TENSOR)
    w_symmetries: tuple[bool, ...] = (True, False)
    a_symmetries: tuple[bool, ...] = (True, False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("ElasticSpace.layers must hold at least one LayerSpec")
        for index, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise ValueError(f"ElasticSpace.layers[{index}] must be a LayerSpec; got {layer!r}")
        if all(layer.pinned is not None for layer in layers):
            raise ValueError("ElasticSpace needs at least one layer that is not pinned")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError("ElasticSpace.layers must have unique names")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "w_bits", _bits_tuple(self.w_bits, "ElasticSpace.w_bits"))
        object.__setattr__(self, "a_bits", _bits_tuple(self.a_bits, "ElasticSpace.a_bits"))
        granularities = _unique_tuple(
            (_granularity(g, "ElasticSpace.granularities") for g in self.granularities),
            "ElasticSpace.granularities",
        )
        object.__setattr__(self, "granularities", granularities)
        for name in ("w_symmetries", "a_symmetries"):
            values = _unique_tuple(
                (_require_bool(v, f"ElasticSpace.{name}") for v in getattr(self, name)),
                f"ElasticSpace.{name}",
            )
            object.__setattr__(self, name, values)

    # -- derived facts ---------------------------------------------------------------------

    @cached_property
    def forms(self) -> tuple[QuantForm, ...]:
        """Every form of the space, in canonical order."""
        return tuple(
            form
            for form in ALL_FORMS
            if form.w_granularity in self.granularities
            and form.w_symmetric in self.w_symmetries
            and form.a_symmetric in self.a_symmetries
        )

    @cached_property
    def elastic_indices(self) -> tuple[int, ...]:
        """Positions of the layers whose bits the search chooses."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.pinned is None)

    @cached_property
    def pinned_indices(self) -> tuple[int, ...]:
        """Positions of the layers with fixed bits."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.pinned is not None)

    @property
    def n_layers(self) -> int:
        """Number of quantizable layers."""
        return len(self.layers)

    @cached_property
    def layer_arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """Per-layer float arrays for vectorised cost models: ``params``, ``inputs``,
        ``macs``, ``channels`` and ``elastic`` (1 where the search chooses the bits)."""
        elastic = np.zeros(self.n_layers)
        elastic[list(self.elastic_indices)] = 1.0
        return {
            "params": np.asarray([layer.n_params for layer in self.layers], dtype=np.float64),
            "inputs": np.asarray([layer.n_inputs for layer in self.layers], dtype=np.float64),
            "macs": np.asarray([layer.macs for layer in self.layers], dtype=np.float64),
            "channels": np.asarray([layer.out_channels for layer in self.layers], dtype=np.float64),
            "elastic": elastic,
        }

    @cached_property
    def _form_set(self) -> frozenset[QuantForm]:
        return frozenset(self.forms)

    @cached_property
    def _w_bits_set(self) -> frozenset[int]:
        return frozenset(self.w_bits)

    @cached_property
    def _a_bits_set(self) -> frozenset[int]:
        return frozenset(self.a_bits)

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the space, stable across processes (used to match predictors)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- validation ------------------------------------------------------------------------

    def check_form(self, form: QuantForm) -> QuantForm:
        """Return ``form`` if the space has it, else raise ValueError naming the allowed ones."""
        if not isinstance(form, QuantForm):
            raise ValueError(f"a form must be a QuantForm; got {form!r}")
        if form not in self._form_set:
            allowed = ", ".join(str(f) for f in self.forms)
            raise ValueError(f"form {form} is not in this space; allowed forms: {allowed}")
        return form

    def validate(self, config: SubnetConfig) -> SubnetConfig:
        """Return ``config`` if it belongs to the space, else raise ValueError naming why."""
        if not isinstance(config, SubnetConfig):
            raise ValueError(f"expected a SubnetConfig; got {type(config).__name__}")
        if len(config.choices) != len(self.layers):
            raise ValueError(
                f"config has {len(config.choices)} layer choices but the space has "
                f"{len(self.layers)} layers"
            )
        for index, (layer, choice) in enumerate(zip(self.layers, config.choices, strict=True)):
            where = f"layer {index} ({layer.name!r})"
            if layer.pinned is not None:
                if (choice.w_bits, choice.a_bits) != layer.pinned:
                    raise ValueError(
                        f"{where} is pinned to w{layer.pinned[0]}/a{layer.pinned[1]} bits; "
                        f"got w{choice.w_bits}/a{choice.a_bits}"
                    )
            else:
                if choice.w_bits not in self._w_bits_set:
                    raise ValueError(
                        f"{where}: w_bits {choice.w_bits} is not in the space's weight bits "
                        f"{self.w_bits}"
                    )
                if choice.a_bits not in self._a_bits_set:
                    raise ValueError(
                        f"{where}: a_bits {choice.a_bits} is not in the space's activation bits "
                        f"{self.a_bits}"
                    )
            if choice.form not in self._form_set:
                allowed = ", ".join(str(f) for f in self.forms)
                raise ValueError(f"{where}: form {choice.form} is not in this space ({allowed})")
        return config

    # -- named subnets ---------------------------------------------------------------------

    def _default_form(self, form: QuantForm | None) -> QuantForm:
        return self.forms[0] if form is None else self.check_form(form)

    def uniform(self, w_bits: int, a_bits: int, form: QuantForm | None = None) -> SubnetConfig:
        """Every elastic layer at ``w_bits``/``a_bits``; pinned layers at their pins."""
        form = self._default_form(form)
        if w_bits not in self._w_bits_set:
            raise ValueError(f"w_bits {w_bits} is not in the space's weight bits {self.w_bits}")
        if a_bits not in self._a_bits_set:
            raise ValueError(f"a_bits {a_bits} is not in the space's activation bits {self.a_bits}")
        return SubnetConfig(
            tuple(
                LayerChoice(*(layer.pinned or (w_bits, a_bits)), form=form) for layer in self.layers
            )
        )

    def largest(self, form: QuantForm | None = None) -> SubnetConfig:
        """The highest-bit subnet in ``form`` (the space's first form by default)."""
        return self.uniform(self.w_bits[-1], self.a_bits[-1], form)

    def smallest(self, form: QuantForm | None = None) -> SubnetConfig:
        """The lowest-bit subnet in ``form`` (the space's first form by default)."""
        return self.uniform(self.w_bits[0], self.a_bits[0], form)

    # -- sampling --------------------------------------------------------------------------

    @overload
    def sample(
        self,
        rng: np.random.Generator | int,
        n: None = None,
        *,
        forms: FormsMode = "global",
        form: QuantForm | None = None,
    ) -> SubnetConfig: ...

    @overload
    def sample(
        self,
        rng: np.random.Generator | int,
        n: int,
        *,
        forms: FormsMode = "global",
        form: QuantForm | None = None,
    ) -> ConfigBatch: ...

    def sample(
        self,
        rng: np.random.Generator | int,
        n: int | None = None,
        *,
        forms: FormsMode = "global",
        form: QuantForm | None = None,
    ) -> SubnetConfig | ConfigBatch:
        """Draw subnets with every elastic layer's bits uniform over the space.

        Args:
            rng: a numpy Generator (or a seed for a new one).
            n: how many; None returns a single SubnetConfig, an int a ConfigBatch.
            forms: ``"global"`` draws one form per subnet, ``"per_layer"`` one per layer.
            form: fix the form instead of drawing it.
        """
        generator = np.random.default_rng(rng)
        count = 1 if n is None else n
        if count < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        w_bits = np.asarray(self.w_bits)[
            generator.integers(0, len(self.w_bits), (count, self.n_layers))
        ]
        a_bits = np.asarray(self.a_bits)[
            generator.integers(0, len(self.a_bits), (count, self.n_layers))
        ]
        if form is not None:
            form_index = np.full((count, self.n_layers), _FORM_INDEX[self.check_form(form)])
        else:
            if forms not in ("global", "per_layer"):
                raise ValueError(f"forms must be 'global' or 'per_layer'; got {forms!r}")
            space_forms = np.asarray([_FORM_INDEX[f] for f in self.forms])
            shape = (count, 1) if forms == "global" else (count, self.n_layers)
            form_index = np.broadcast_to(
                space_forms[generator.integers(0, len(space_forms), shape)],
                (count, self.n_layers),
            )
        batch = ConfigBatch.from_arrays(self, w_bits, a_bits, form_index)
        return batch[0] if n is None else batch

    # -- batches and genomes ---------------------------------------------------------------

    def batch(self, configs: SubnetConfig | Sequence[SubnetConfig]) -> ConfigBatch:
        """The configs as a :class:`ConfigBatch` (validated; a batch of this space passes)."""
        if isinstance(configs, ConfigBatch):
            if configs.space is not self and configs.space != self:
                raise ValueError("the ConfigBatch belongs to another space")
            return configs
        if isinstance(configs, SubnetConfig):
            configs = [configs]
        return ConfigBatch.from_configs(self, configs)

    def genome_layout(
        self, forms: QuantForm | Sequence[QuantForm] | None = None, *, per_layer: bool = False
    ) -> GenomeLayout:
        """The integer genome for a search over this space.

        Args:
            forms: a fixed form, a set of forms to choose from (e.g. a hardware target's), or
                None for every form of the space.
            per_layer: when several forms are allowed, one form gene per layer instead of one
                global gene.
        """
        return GenomeLayout(self, forms, per_layer=per_layer)

    def genome_bounds(
        self, forms: QuantForm | Sequence[QuantForm] | None = None, *, per_layer: bool = False
    ) -> tuple[IntArray, IntArray]:
        """Inclusive lower and upper bounds of every gene (see :meth:`genome_layout`)."""
        layout = self.genome_layout(forms, per_layer=per_layer)
        return layout.lower, layout.upper

    def encode(
        self,
        configs: SubnetConfig | Sequence[SubnetConfig],
        forms: QuantForm | Sequence[QuantForm] | None = None,
        *,
        per_layer: bool = False,
    ) -> IntArray:
        """Integer genomes (one row per config) of the layout :meth:`genome_layout` gives."""
        return self.genome_layout(forms, per_layer=per_layer).encode(self.batch(configs))

    def decode(
        self,
        genomes: npt.ArrayLike,
        forms: QuantForm | Sequence[QuantForm] | None = None,
        *,
        per_layer: bool = False,
    ) -> ConfigBatch:
        """Configs of integer genomes (inverse of :meth:`encode`)."""
        return self.genome_layout(forms, per_layer=per_layer).decode(genomes)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the space."""
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "w_bits": list(self.w_bits),
            "a_bits": list(self.a_bits),
            "granularities": [g.value for g in self.granularities],
            "w_symmetries": list(self.w_symmetries),
            "a_symmetries": list(self.a_symmetries),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ElasticSpace:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                layers=tuple(LayerSpec.from_dict(layer) for layer in data["layers"]),
                w_bits=tuple(data["w_bits"]),
                a_bits=tuple(data["a_bits"]),
                granularities=tuple(data["granularities"]),
                w_symmetries=tuple(data["w_symmetries"]),
                a_symmetries=tuple(data["a_symmetries"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not an ElasticSpace dict: missing or bad field {error}") from None

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ElasticSpace:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """One line: layer counts, bits and forms."""
        return (
            f"{self.n_layers} layers ({len(self.elastic_indices)} elastic), "
            f"W bits {self.w_bits}, A bits {self.a_bits}, forms {', '.join(map(str, self.forms))}"
        )


class ConfigBatch(Sequence[SubnetConfig]):
    """Many subnets of one space as integer arrays; also a ``Sequence[SubnetConfig]``.

    Cost models, encoders and search engines use the arrays (shape ``(n, n_layers)``);
    anything that wants configs indexes the batch and gets SubnetConfig objects, built lazily.
    """

    __slots__ = ("_configs", "a_bits", "form_index", "space", "w_bits")

    def __init__(
        self,
        space: ElasticSpace,
        w_bits: IntArray,
        a_bits: IntArray,
        form_index: IntArray,
        configs: list[SubnetConfig] | None = None,
    ) -> None:
        self.space = space
        self.w_bits = w_bits
        self.a_bits = a_bits
        self.form_index = form_index
        self._configs = configs

    @classmethod
    def from_arrays(
        cls,
        space: ElasticSpace,
        w_bits: npt.ArrayLike,
        a_bits: npt.ArrayLike,
        form_index: npt.ArrayLike,
    ) -> ConfigBatch:
        """Build from arrays of bits and canonical form indices (see ``ALL_FORMS``).

        Pinned layers get their pinned bits whatever the arrays say.
        """
        shape = (-1, space.n_layers)
        w = np.array(w_bits, dtype=np.int64).reshape(shape)
        a = np.array(a_bits, dtype=np.int64).reshape(shape)
        f = np.array(form_index, dtype=np.int64).reshape(shape)
        if not (w.shape == a.shape == f.shape):
            raise ValueError("w_bits, a_bits and form_index must have the same shape")
        for index in space.pinned_indices:
            pinned = space.layers[index].pinned
            assert pinned is not None  # pinned_indices holds pinned layers only
            w[:, index], a[:, index] = pinned
        return cls(space, w, a, f)

    @classmethod
    def from_configs(cls, space: ElasticSpace, configs: Iterable[SubnetConfig]) -> ConfigBatch:
        """Validate each config and stack it."""
        validated = [space.validate(config) for config in configs]
        n = len(validated)
        w = np.empty((n, space.n_layers), dtype=np.int64)
        a = np.empty((n, space.n_layers), dtype=np.int64)
        f = np.empty((n, space.n_layers), dtype=np.int64)
        for row, config in enumerate(validated):
            w[row] = [choice.w_bits for choice in config.choices]
            a[row] = [choice.a_bits for choice in config.choices]
            f[row] = [_FORM_INDEX[choice.form] for choice in config.choices]
        return cls(space, w, a, f, validated)

    def __len__(self) -> int:
        return int(self.w_bits.shape[0])

    @overload
    def __getitem__(self, index: int) -> SubnetConfig: ...

    @overload
    def __getitem__(self, index: slice) -> ConfigBatch: ...

    def __getitem__(self, index: int | slice) -> SubnetConfig | ConfigBatch:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.configs()[index]

    def take(self, rows: npt.ArrayLike) -> ConfigBatch:
        """A batch of the given rows (an index array or a boolean mask)."""
        selector = np.asarray(rows)
        return ConfigBatch(
            self.space, self.w_bits[selector], self.a_bits[selector], self.form_index[selector]
        )

    def configs(self) -> list[SubnetConfig]:
        """Every row as a SubnetConfig (built once, then cached)."""
        if self._configs is None:
            interned: dict[tuple[int, int, int], LayerChoice] = {}
            configs: list[SubnetConfig] = []
            for w_row, a_row, f_row in zip(
                self.w_bits.tolist(), self.a_bits.tolist(), self.form_index.tolist(), strict=True
            ):
                choices = []
                for key in zip(w_row, a_row, f_row, strict=True):
                    choice = interned.get(key)
                    if choice is None:
                        choice = LayerChoice(key[0], key[1], ALL_FORMS[key[2]])
                        interned[key] = choice
                    choices.append(choice)
                configs.append(SubnetConfig(tuple(choices)))
            self._configs = configs
        return self._configs

    @property
    def per_channel(self) -> BoolArray:
        """Per layer: weights quantized per channel."""
        result: BoolArray = self.form_index < 4
        return result

    @property
    def w_symmetric(self) -> BoolArray:
        """Per layer: weights quantized symmetrically."""
        result: BoolArray = (self.form_index % 4) < 2
        return result

    @property
    def a_symmetric(self) -> BoolArray:
        """Per layer: activations quantized symmetrically."""
        result: BoolArray = (self.form_index % 2) == 0
        return result

    def keys(self) -> list[bytes]:
        """One hashable key per row (for caches and duplicate checks)."""
        stacked = np.concatenate([self.w_bits, self.a_bits, self.form_index], axis=1)
        contiguous = np.ascontiguousarray(stacked.astype(np.int8))
        return [row.tobytes() for row in contiguous]

    def __repr__(self) -> str:
        return f"ConfigBatch({len(self)} configs of {self.space.n_layers} layers)"


class GenomeLayout:
    """Integer genome of a search: weight-bit genes, activation-bit genes, then form genes.

    Genes index into the space's bit widths (and into the allowed forms): gene ``k`` of the
    first block is the index of the ``k``-th elastic layer's weight bits in ``space.w_bits``.
    With one allowed form there are no form genes; with several there is one global gene or,
    with ``per_layer``, one per layer (pinned layers included: their forms matter too).
    """

    def __init__(
        self,
        space: ElasticSpace,
        forms: QuantForm | Sequence[QuantForm] | None = None,
        *,
        per_layer: bool = False,
    ) -> None:
        if forms is None:
            allowed: tuple[QuantForm, ...] = space.forms
        elif isinstance(forms, QuantForm):
            allowed = (forms,)
        else:
            allowed = tuple(dict.fromkeys(forms))
            if not allowed:
                raise ValueError("forms must name at least one QuantForm")
        for form in allowed:
            space.check_form(form)
        self.space = space
        self.forms = allowed
        self.per_layer = per_layer and len(allowed) > 1
        self.elastic = np.asarray(space.elastic_indices, dtype=np.int64)
        n_elastic = len(self.elastic)
        if len(allowed) == 1:
            n_form_genes = 0
        elif self.per_layer:
            n_form_genes = space.n_layers
        else:
            n_form_genes = 1
        self.n_bit_genes = 2 * n_elastic
        self.n_form_genes = n_form_genes
        self.lower = np.zeros(self.n_bit_genes + n_form_genes, dtype=np.int64)
        self.upper = np.concatenate(
            [
                np.full(n_elastic, len(space.w_bits) - 1),
                np.full(n_elastic, len(space.a_bits) - 1),
                np.full(n_form_genes, len(allowed) - 1),
            ]
        ).astype(np.int64)
        self._w_values = np.asarray(space.w_bits, dtype=np.int64)
        self._a_values = np.asarray(space.a_bits, dtype=np.int64)
        self._form_values = np.asarray([_FORM_INDEX[f] for f in allowed], dtype=np.int64)
        self._w_lookup = {bits: i for i, bits in enumerate(space.w_bits)}
        self._a_lookup = {bits: i for i, bits in enumerate(space.a_bits)}
        self._form_lookup = np.full(len(ALL_FORMS), -1, dtype=np.int64)
        self._form_lookup[self._form_values] = np.arange(len(allowed))
        self._template_w = np.zeros(space.n_layers, dtype=np.int64)
        self._template_a = np.zeros(space.n_layers, dtype=np.int64)
        for index in space.pinned_indices:
            pinned = space.layers[index].pinned
            assert pinned is not None
            self._template_w[index], self._template_a[index] = pinned

    @property
    def n_genes(self) -> int:
        """Genome length."""
        return int(self.lower.shape[0])

    def decode(self, genomes: npt.ArrayLike) -> ConfigBatch:
        """Configs of a ``(n, n_genes)`` integer array (values are clipped to the bounds)."""
        genes = np.asarray(genomes)
        if genes.ndim == 1:
            genes = genes[None, :]
        if genes.ndim != 2 or genes.shape[1] != self.n_genes:
            raise ValueError(f"genomes must have shape (n, {self.n_genes}); got {genes.shape}")
        genes = np.clip(np.rint(genes).astype(np.int64), self.lower, self.upper)
        n = genes.shape[0]
        n_elastic = len(self.elastic)
        w = np.broadcast_to(self._template_w, (n, self.space.n_layers)).copy()
        a = np.broadcast_to(self._template_a, (n, self.space.n_layers)).copy()
        w[:, self.elastic] = self._w_values[genes[:, :n_elastic]]
        a[:, self.elastic] = self._a_values[genes[:, n_elastic : 2 * n_elastic]]
        if self.n_form_genes == 0:
            f = np.full((n, self.space.n_layers), self._form_values[0], dtype=np.int64)
        else:
            chosen = self._form_values[genes[:, self.n_bit_genes :]]
            f = np.broadcast_to(chosen, (n, self.space.n_layers)).copy()
        return ConfigBatch(self.space, w, a, f)

    def encode(self, batch: ConfigBatch) -> IntArray:
        """Genomes of a batch; raises ValueError for a form this layout does not allow."""
        n_elastic = len(self.elastic)
        genes = np.empty((len(batch), self.n_genes), dtype=np.int64)
        w_index = np.vectorize(self._w_lookup.__getitem__, otypes=[np.int64])
        a_index = np.vectorize(self._a_lookup.__getitem__, otypes=[np.int64])
        if len(batch):
            genes[:, :n_elastic] = w_index(batch.w_bits[:, self.elastic])
            genes[:, n_elastic : 2 * n_elastic] = a_index(batch.a_bits[:, self.elastic])
        form_genes = self._form_lookup[batch.form_index]
        if (form_genes < 0).any():
            allowed = ", ".join(map(str, self.forms))
            raise ValueError(f"a config uses a form outside this genome's forms ({allowed})")
        if self.n_form_genes == 1:
            if (form_genes != form_genes[:, :1]).any():
                raise ValueError("a config mixes forms but this genome has one global form gene")
            genes[:, self.n_bit_genes :] = form_genes[:, :1]
        elif self.n_form_genes > 1:
            genes[:, self.n_bit_genes :] = form_genes
        return genes

    def random(self, rng: np.random.Generator | int, n: int) -> IntArray:
        """``n`` genomes uniform over the bounds."""
        generator = np.random.default_rng(rng)
        return generator.integers(self.lower, self.upper + 1, size=(n, self.n_genes))
