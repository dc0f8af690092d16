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

from eqsearch.errors import InputError
from eqsearch.genes import (
    ActivityRules,
    ArchGene,
    Condition,
    check_condition,
    check_gene_order,
    conditions_tuple,
    implies,
)
from eqsearch.geometry import GeometryTables, LayerGeometry
from eqsearch.numbers import loads_json

FULL_PRECISION_BITS = 32
"""Bit width that stands for "not quantized" (a layer pinned to full precision)."""

MIN_BITS = 2
MAX_BITS = 16

SPACE_VERSION = 1
"""Format version of files written for a space without architecture genes (today's files)."""
JOINT_SPACE_VERSION = 2
"""Format version of files written for a joint architecture × quantization space."""
READABLE_VERSIONS = (SPACE_VERSION, JOINT_SPACE_VERSION)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
ArchChoices = tuple[tuple[str, int], ...]
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
        raise InputError(
            f"{field_name} must be one of 'channel', 'tensor'; got {value!r}"
        ) from None


def _require_bool(value: object, field_name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{field_name} must be True or False; got {value!r}")
    return bool(value)


def _require_bits(value: object, field_name: str, *, allow_full_precision: bool) -> int:
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
            raise InputError(
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


def _arch_choices(arch: Mapping[str, int] | Iterable[tuple[str, int]]) -> ArchChoices:
    items = arch.items() if isinstance(arch, Mapping) else arch
    choices: dict[str, int] = {}
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"SubnetConfig.arch must map gene names to values; got {item!r}")
        name, value = item
        if not isinstance(name, str) or not name:
            raise InputError(f"SubnetConfig.arch gene names must be strings; got {name!r}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputError(f"SubnetConfig.arch[{name!r}] must be an integer; got {value!r}")
        if name in choices:
            raise InputError(f"SubnetConfig.arch names gene {name!r} twice")
        choices[name] = int(value)
    return tuple(sorted(choices.items()))


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet of an elastic space.

    Args:
        choices: a :class:`LayerChoice` per layer in space order — per *active* layer in a
            joint space (a block its depth switches off has none).
        arch: the architecture choices of a joint space, ``{gene name: value}`` for its active
            genes only (a mapping or pairs; stored sorted by name). Empty for a space without
            architecture genes.
    """

    choices: tuple[LayerChoice, ...]
    arch: ArchChoices = ()

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise InputError("SubnetConfig.choices must hold one LayerChoice per layer; got none")
        for index, choice in enumerate(choices):
            if not isinstance(choice, LayerChoice):
                raise InputError(
                    f"SubnetConfig.choices[{index}] must be a LayerChoice; got {choice!r}"
                )
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "arch", _arch_choices(self.arch))

    def __len__(self) -> int:
        return len(self.choices)

    def __iter__(self) -> Iterator[LayerChoice]:
        return iter(self.choices)

    @property
    def arch_dict(self) -> dict[str, int]:
        """The architecture choices as a dict (empty without architecture genes)."""
        return dict(self.arch)

    @property
    def uniform_form(self) -> QuantForm | None:
        """The form shared by every layer, or None when layers differ."""
        forms = {choice.form for choice in self.choices}
        return forms.pop() if len(forms) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict ``{"choices": [...]}`` (``{"arch": {...}, "choices": [...]}`` in a
        joint space)."""
        data: dict[str, Any] = {"arch": dict(self.arch)} if self.arch else {}
        data["choices"] = [choice.to_dict() for choice in self.choices]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetConfig:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list):
            raise InputError("a subnet config is a JSON object with a list under 'choices'")
        arch = data.get("arch", {})
        if not isinstance(arch, Mapping):
            raise InputError("a subnet config's 'arch' must map gene names to values")
        return cls(
            tuple(LayerChoice.from_dict(item) for item in data["choices"]), _arch_choices(arch)
        )

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SubnetConfig:
        """Parse :meth:`to_json` output."""
        try:
            data = loads_json(text)
        except json.JSONDecodeError as error:
            raise InputError(f"a subnet config must be JSON: {error}") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        weights = ",".join(str(choice.w_bits) for choice in self.choices)
        activations = ",".join(str(choice.a_bits) for choice in self.choices)
        form = self.uniform_form
        text = f"W[{weights}] A[{activations}] {form if form else 'mixed forms'}"
        if self.arch:
            text = " ".join(f"{name}={value}" for name, value in self.arch) + " | " + text
        return text


LAYER_KINDS = ("conv", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """What the search and the cost models know of one quantizable layer.

    Args:
        name: module path in the model (``"layer1.0.conv1"``).
        kind: ``"conv"`` or ``"linear"``.
        n_params: number of weight elements (of the largest architecture in a joint space).
        macs: multiply-accumulates per input sample (largest architecture).
        n_inputs: input activation elements per sample (largest architecture).
        out_channels: output channels (number of per-channel step sizes; largest architecture).
        pinned: ``(w_bits, a_bits)`` the layer is fixed to, ``(32, 32)`` for full precision,
            or None when the search chooses its bits.
        geometry: in a joint space, how the layer's shape follows the architecture genes
            (None: the constants above hold for every architecture).
        active_if: in a joint space, conditions on the genes that must all hold for the layer
            to run (a block switched off by its stage's depth); empty: always runs.
    """

    name: str
    kind: str
    n_params: int
    macs: int
    n_inputs: int
    out_channels: int
    pinned: tuple[int, int] | None = None
    geometry: LayerGeometry | None = None
    active_if: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"LayerSpec.name must be a non-empty string; got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise InputError(f"LayerSpec.kind must be one of {LAYER_KINDS}; got {self.kind!r}")
        for name in ("n_params", "macs", "n_inputs", "out_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"LayerSpec.{name} must be a positive integer; got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.pinned is not None:
            pinned = tuple(self.pinned)
            if len(pinned) != 2:
                raise InputError(
                    f"LayerSpec.pinned must be (w_bits, a_bits) or None; got {self.pinned!r}"
                )
            w_bits = _require_bits(pinned[0], "LayerSpec.pinned w_bits", allow_full_precision=True)
            a_bits = _require_bits(pinned[1], "LayerSpec.pinned a_bits", allow_full_precision=True)
            if (w_bits == FULL_PRECISION_BITS) != (a_bits == FULL_PRECISION_BITS):
                raise InputError(
                    "LayerSpec.pinned: full precision (32) must apply to weights and "
                    f"activations together; got {pinned}"
                )
            object.__setattr__(self, "pinned", (w_bits, a_bits))
        if self.geometry is not None:
            if not isinstance(self.geometry, LayerGeometry):
                raise InputError(
                    f"LayerSpec.geometry must be a LayerGeometry or None; got {self.geometry!r}"
                )
            if self.kind == "linear" and (
                self.geometry.kernel.largest != 1 or self.geometry.depthwise
            ):
                raise InputError(f"LayerSpec {self.name!r}: a linear layer has kernel 1, no groups")
            largest = self.geometry.largest()
            measured = {name: getattr(self, name) for name in largest}
            if largest != measured:
                raise InputError(
                    f"LayerSpec {self.name!r}: the constants {measured} differ from its "
                    f"geometry's largest architecture {largest}"
                )
        object.__setattr__(
            self,
            "active_if",
            conditions_tuple(self.active_if, f"LayerSpec {self.name!r} active_if"),
        )

    @classmethod
    def from_geometry(
        cls,
        name: str,
        kind: str,
        geometry: LayerGeometry,
        *,
        pinned: tuple[int, int] | None = None,
        active_if: Iterable[Condition] = (),
    ) -> LayerSpec:
        """A layer of a joint space: its constants are its geometry's largest architecture."""
        return cls(
            name,
            kind,
            **geometry.largest(),
            pinned=pinned,
            geometry=geometry,
            active_if=tuple(active_if),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (``geometry`` and ``active_if`` only where set)."""
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "n_params": self.n_params,
            "macs": self.macs,
            "n_inputs": self.n_inputs,
            "out_channels": self.out_channels,
            "pinned": list(self.pinned) if self.pinned is not None else None,
        }
        if self.geometry is not None:
            data["geometry"] = self.geometry.to_dict()
        if self.active_if:
            data["active_if"] = [condition.to_dict() for condition in self.active_if]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """Inverse of :meth:`to_dict`."""
        pinned = data.get("pinned")
        geometry = data.get("geometry")
        return cls(
            name=data["name"],
            kind=data["kind"],
            n_params=data["n_params"],
            macs=data["macs"],
            n_inputs=data["n_inputs"],
            out_channels=data["out_channels"],
            pinned=(int(pinned[0]), int(pinned[1])) if pinned is not None else None,
            geometry=LayerGeometry.from_dict(geometry) if geometry is not None else None,
            active_if=tuple(Condition.from_dict(item) for item in data.get("active_if", ())),
        )


def _bits_tuple(values: Iterable[object], field_name: str) -> tuple[int, ...]:
    bits = sorted({_require_bits(v, field_name, allow_full_precision=False) for v in values})
    if not bits:
        raise InputError(f"{field_name} must hold at least one bit width")
    return tuple(bits)


def _unique_tuple(values: Iterable[Any], field_name: str) -> tuple[Any, ...]:
    unique = tuple(dict.fromkeys(values))
    if not unique:
        raise InputError(f"{field_name} must hold at least one value")
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
        genes: architecture genes of a joint space (depths, expand ratios, kernels, input
            resolution), in an order where each gene's conditions name earlier genes only.
            Layers say which genes switch them off (``active_if``) and reshape them
            (``geometry``). Empty: a fixed architecture, exactly the space of before.
        unquantized: layers of the model that the supernet cannot quantize and leaves in
            full precision, outside every cost (``"encoder.attn (MultiheadAttention)"``).
    """

    layers: tuple[LayerSpec, ...]
    w_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    a_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    granularities: tuple[Granularity, ...] = (Granularity.CHANNEL, Granularity.TENSOR)
    w_symmetries: tuple[bool, ...] = (True, False)
    a_symmetries: tuple[bool, ...] = (True, False)
    genes: tuple[ArchGene, ...] = ()
    unquantized: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise InputError("ElasticSpace.layers must hold at least one LayerSpec")
        for index, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise InputError(f"ElasticSpace.layers[{index}] must be a LayerSpec; got {layer!r}")
        if all(layer.pinned is not None for layer in layers):
            raise InputError("ElasticSpace needs at least one layer that is not pinned")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise InputError("ElasticSpace.layers must have unique names")
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
        genes = tuple(self.genes)
        object.__setattr__(self, "genes", genes)
        unquantized = tuple(self.unquantized)
        if not all(isinstance(name, str) and name for name in unquantized):
            raise InputError("ElasticSpace.unquantized must hold non-empty strings")
        object.__setattr__(self, "unquantized", unquantized)
        self._check_architecture(genes, layers)

    @staticmethod
    def _check_architecture(genes: tuple[ArchGene, ...], layers: tuple[LayerSpec, ...]) -> None:
        positions = check_gene_order(genes)
        for layer in layers:
            where = f"layer {layer.name!r}"
            for condition in layer.active_if:
                check_condition(condition, genes, positions, where)
            if layer.geometry is None:
                continue
            for dim in layer.geometry.dims:
                if dim.gene is None:
                    continue
                if dim.gene not in positions:
                    raise InputError(
                        f"{where}: its geometry follows {dim.gene!r}, which is not an "
                        "architecture gene of the space"
                    )
                gene = genes[positions[dim.gene]]
                dim.sizes_for(gene)
                if not implies(layer.active_if, gene.active_if, genes, positions):
                    raise InputError(
                        f"{where}: its geometry follows {gene.name!r}, which can be inactive "
                        "while the layer runs (give the layer the gene's conditions)"
                    )
        if genes and all(layer.active_if for layer in layers if layer.pinned is None):
            raise InputError("ElasticSpace needs at least one searched layer that always runs")

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

    @property
    def is_joint(self) -> bool:
        """Whether the space has architecture genes (a joint architecture × bits space)."""
        return bool(self.genes)

    @property
    def format_version(self) -> int:
        """The format version of files written for this space: 2 for a joint space, else 1."""
        return JOINT_SPACE_VERSION if self.genes else SPACE_VERSION

    @cached_property
    def gene_positions(self) -> dict[str, int]:
        """Position of every architecture gene by name."""
        return {gene.name: index for index, gene in enumerate(self.genes)}

    @cached_property
    def layer_arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """Per-layer float arrays for vectorised cost models: ``params``, ``inputs``,
        ``macs``, ``channels`` and ``elastic`` (1 where the search chooses the bits).

        In a joint space these are the largest architecture's; ``ConfigBatch.params`` (and
        ``macs``, ``inputs``, ``channels``) give each config's own."""
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
    def activity(self) -> ActivityRules:
        """The vectorised activity of genes and layers (see :class:`ActivityRules`)."""
        return ActivityRules(self.genes, [layer.active_if for layer in self.layers])

    @cached_property
    def geometry_tables(self) -> GeometryTables:
        """The vectorised per-config layer quantities (see :class:`GeometryTables`)."""
        constants = [
            {
                "params": layer.n_params,
                "macs": layer.macs,
                "inputs": layer.n_inputs,
                "channels": layer.out_channels,
            }
            for layer in self.layers
        ]
        return GeometryTables(self.genes, [layer.geometry for layer in self.layers], constants)

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

    # -- architectures ---------------------------------------------------------------------

    def arch_indices(self, arch: Mapping[str, int] | str | None = None) -> IntArray:
        """Canonical gene indices ``(genes,)`` of an architecture.

        ``arch`` is ``"largest"`` (None), ``"smallest"``, or a mapping of gene values; genes it
        does not name take their largest value, and genes that the others switch off are
        dropped (canonical index 0).
        """
        if arch is None or arch == "largest":
            indices = np.asarray([len(gene.values) - 1 for gene in self.genes], dtype=np.int64)
        elif arch == "smallest":
            indices = np.zeros(len(self.genes), dtype=np.int64)
        elif isinstance(arch, Mapping):
            unknown = sorted(set(arch) - set(self.gene_positions))
            if unknown:
                raise InputError(
                    f"unknown architecture gene(s) {', '.join(unknown)}; the space has "
                    f"{', '.join(self.gene_positions) or 'none'}"
                )
            indices = np.asarray(
                [
                    gene.index(arch[gene.name]) if gene.name in arch else len(gene.values) - 1
                    for gene in self.genes
                ],
                dtype=np.int64,
            )
        else:
            raise InputError(f"arch must be 'largest', 'smallest' or a mapping; got {arch!r}")
        canonical, _, _ = self.activity.evaluate(indices[None, :])
        result: IntArray = canonical[0]
        return result

    def _arch_of(self, config: SubnetConfig) -> tuple[dict[str, int], list[bool]]:
        """The config's architecture checked against the genes, and which layers run."""
        given = dict(config.arch)
        unknown = sorted(set(given) - set(self.gene_positions))
        if unknown:
            names = ", ".join(self.gene_positions) or "none"
            raise InputError(
                f"config names unknown architecture gene(s) {', '.join(unknown)}; the space "
                f"has {names}"
            )
        active: dict[str, int] = {}
        for gene in self.genes:
            if all(condition.holds(active) for condition in gene.active_if):
                if gene.name not in given:
                    raise InputError(f"config lacks the architecture gene {gene.name!r}")
                gene.index(given[gene.name])
                active[gene.name] = given[gene.name]
            elif gene.name in given:
                raise InputError(
                    f"config sets {gene.name!r}, which its other genes switch off; a config "
                    "leaves inactive genes out (ElasticSpace.canonical drops them)"
                )
        running = [all(c.holds(active) for c in layer.active_if) for layer in self.layers]
        return active, running

    def active_layers(self, config: SubnetConfig) -> list[int]:
        """Positions of the layers that run in ``config`` (every layer without genes)."""
        _, running = self._arch_of(config)
        return [index for index, runs in enumerate(running) if runs]

    def layer_choices(self, config: SubnetConfig) -> list[LayerChoice | None]:
        """One entry per layer of the space: its choice, or None where the layer does not run
        (what a supernet hands each of its layers)."""
        active = self.active_layers(self.validate(config))
        result: list[LayerChoice | None] = [None] * self.n_layers
        for index, choice in zip(active, config.choices, strict=True):
            result[index] = choice
        return result

    def canonical(self, config: SubnetConfig) -> SubnetConfig:
        """``config`` with the genes and layer choices its architecture switches off dropped.

        ``config.choices`` may hold one choice per layer of the space (those of layers that do
        not run are dropped) or one per running layer.
        """
        given = dict(config.arch)
        active: dict[str, int] = {}
        for gene in self.genes:
            if gene.name in given and all(c.holds(active) for c in gene.active_if):
                active[gene.name] = given[gene.name]
        choices = config.choices
        if len(choices) == self.n_layers:
            choices = tuple(
                choice
                for choice, layer in zip(choices, self.layers, strict=True)
                if all(c.holds(active) for c in layer.active_if)
            )
        return self.validate(SubnetConfig(choices, _arch_choices(active)))

    # -- validation ------------------------------------------------------------------------

    def check_form(self, form: QuantForm) -> QuantForm:
        """Return ``form`` if the space has it, else raise ValueError naming the allowed ones."""
        if not isinstance(form, QuantForm):
            raise InputError(f"a form must be a QuantForm; got {form!r}")
        if form not in self._form_set:
            allowed = ", ".join(str(f) for f in self.forms)
            raise InputError(f"form {form} is not in this space; allowed forms: {allowed}")
        return form

    def validate(self, config: SubnetConfig) -> SubnetConfig:
        """Return ``config`` if it belongs to the space, else raise ValueError naming why."""
        if not isinstance(config, SubnetConfig):
            raise InputError(f"expected a SubnetConfig; got {type(config).__name__}")
        if self.genes or config.arch:
            _, running = self._arch_of(config)
            layers = [(i, layer) for i, layer in enumerate(self.layers) if running[i]]
            if len(config.choices) != len(layers):
                raise InputError(
                    f"config has {len(config.choices)} layer choices but its architecture runs "
                    f"{len(layers)} of the space's {len(self.layers)} layers"
                )
        else:
            layers = list(enumerate(self.layers))
            if len(config.choices) != len(self.layers):
                raise InputError(
                    f"config has {len(config.choices)} layer choices but the space has "
                    f"{len(self.layers)} layers"
                )
        for (index, layer), choice in zip(layers, config.choices, strict=True):
            where = f"layer {index} ({layer.name!r})"
            if layer.pinned is not None:
                if (choice.w_bits, choice.a_bits) != layer.pinned:
                    raise InputError(
                        f"{where} is pinned to w{layer.pinned[0]}/a{layer.pinned[1]} bits; "
                        f"got w{choice.w_bits}/a{choice.a_bits}"
                    )
            else:
                if choice.w_bits not in self._w_bits_set:
                    raise InputError(
                        f"{where}: w_bits {choice.w_bits} is not in the space's weight bits "
                        f"{self.w_bits}"
                    )
                if choice.a_bits not in self._a_bits_set:
                    raise InputError(
                        f"{where}: a_bits {choice.a_bits} is not in the space's activation bits "
                        f"{self.a_bits}"
                    )
            if choice.form not in self._form_set:
                allowed = ", ".join(str(f) for f in self.forms)
                raise InputError(f"{where}: form {choice.form} is not in this space ({allowed})")
        return config

    # -- named subnets ---------------------------------------------------------------------

    def _default_form(self, form: QuantForm | None) -> QuantForm:
        return self.forms[0] if form is None else self.check_form(form)

    def uniform(
        self,
        w_bits: int,
        a_bits: int,
        form: QuantForm | None = None,
        *,
        arch: Mapping[str, int] | str | None = None,
    ) -> SubnetConfig:
        """Every elastic layer at ``w_bits``/``a_bits``; pinned layers at their pins.

        In a joint space ``arch`` chooses the architecture (see :meth:`arch_indices`; the
        largest by default).
        """
        form = self._default_form(form)
        if w_bits not in self._w_bits_set:
            raise InputError(f"w_bits {w_bits} is not in the space's weight bits {self.w_bits}")
        if a_bits not in self._a_bits_set:
            raise InputError(f"a_bits {a_bits} is not in the space's activation bits {self.a_bits}")
        if not self.genes:
            if arch not in (None, "largest", "smallest") and arch != {}:
                raise InputError("arch chooses an architecture; this space has no genes")
            return SubnetConfig(
                tuple(
                    LayerChoice(*(layer.pinned or (w_bits, a_bits)), form=form)
                    for layer in self.layers
                )
            )
        shape = (1, self.n_layers)
        batch = ConfigBatch.from_arrays(
            self,
            np.full(shape, w_bits),
            np.full(shape, a_bits),
            np.full(shape, _FORM_INDEX[form]),
            arch=self.arch_indices(arch)[None, :],
        )
        return batch[0]

    def largest(self, form: QuantForm | None = None) -> SubnetConfig:
        """The highest-bit subnet (the largest architecture) in ``form`` (the space's first
        form by default)."""
        return self.uniform(self.w_bits[-1], self.a_bits[-1], form, arch="largest")

    def smallest(self, form: QuantForm | None = None) -> SubnetConfig:
        """The lowest-bit subnet (the smallest architecture) in ``form`` (the space's first
        form by default)."""
        return self.uniform(self.w_bits[0], self.a_bits[0], form, arch="smallest")

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
        """Draw subnets with every elastic layer's bits (and every architecture gene) uniform
        over the space.

        Args:
            rng: a numpy Generator (or a seed for a new one).
            n: how many; None returns a single SubnetConfig, an int a ConfigBatch.
            forms: ``"global"`` draws one form per subnet, ``"per_layer"`` one per layer.
            form: fix the form instead of drawing it.
        """
        generator = np.random.default_rng(rng)
        count = 1 if n is None else n
        if count < 0:
            raise InputError(f"n must be >= 0; got {n}")
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
                raise InputError(f"forms must be 'global' or 'per_layer'; got {forms!r}")
            space_forms = np.asarray([_FORM_INDEX[f] for f in self.forms])
            shape = (count, 1) if forms == "global" else (count, self.n_layers)
            form_index = np.broadcast_to(
                space_forms[generator.integers(0, len(space_forms), shape)],
                (count, self.n_layers),
            )
        arch = self.random_arch(generator, count) if self.genes else None
        batch = ConfigBatch.from_arrays(self, w_bits, a_bits, form_index, arch=arch)
        return batch[0] if n is None else batch

    def random_arch(self, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` architectures, each gene's index uniform over its values ``(n, genes)``
        (not yet canonical)."""
        sizes = np.asarray([len(gene.values) for gene in self.genes], dtype=np.int64)
        result: IntArray = rng.integers(0, sizes, (n, len(self.genes)))
        return result

    # -- batches and genomes ---------------------------------------------------------------

    def batch(self, configs: SubnetConfig | Sequence[SubnetConfig]) -> ConfigBatch:
        """The configs as a :class:`ConfigBatch` (validated; a batch of this space passes)."""
        if isinstance(configs, ConfigBatch):
            if configs.space is not self and configs.space != self:
                raise InputError("the ConfigBatch belongs to another space")
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
        """JSON-able dict of the space (a joint space adds ``version`` 2 and ``genes``)."""
        data: dict[str, Any] = {"version": JOINT_SPACE_VERSION} if self.genes else {}
        data.update(
            {
                "layers": [layer.to_dict() for layer in self.layers],
                "w_bits": list(self.w_bits),
                "a_bits": list(self.a_bits),
                "granularities": [g.value for g in self.granularities],
                "w_symmetries": list(self.w_symmetries),
                "a_symmetries": list(self.a_symmetries),
            }
        )
        if self.genes:
            data["genes"] = [gene.to_dict() for gene in self.genes]
        if self.unquantized:  # absent when empty: the JSON (and fingerprint) of before
            data["unquantized"] = list(self.unquantized)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ElasticSpace:
        """Inverse of :meth:`to_dict` (reads both format versions)."""
        if not isinstance(data, Mapping):
            raise InputError("not an ElasticSpace dict: expected a JSON object")
        version = data.get("version", SPACE_VERSION)
        if version not in READABLE_VERSIONS:
            raise InputError(
                f"the space is format version {version!r}; this eqsearch reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        try:
            return cls(
                layers=tuple(LayerSpec.from_dict(layer) for layer in data["layers"]),
                w_bits=tuple(data["w_bits"]),
                a_bits=tuple(data["a_bits"]),
                granularities=tuple(data["granularities"]),
                w_symmetries=tuple(data["w_symmetries"]),
                a_symmetries=tuple(data["a_symmetries"]),
                genes=tuple(ArchGene.from_dict(gene) for gene in data.get("genes", ())),
                unquantized=tuple(data.get("unquantized", ())),
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"not an ElasticSpace dict: missing or bad field {error}") from None

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ElasticSpace:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(loads_json(text))

    def describe(self) -> str:
        """One line: layer counts, bits and forms (and architecture genes)."""
        text = (
            f"{self.n_layers} layers ({len(self.elastic_indices)} elastic), "
            f"W bits {self.w_bits}, A bits {self.a_bits}, forms {', '.join(map(str, self.forms))}"
        )
        if self.genes:
            text += f", {len(self.genes)} architecture genes"
        if self.unquantized:
            text += f", {len(self.unquantized)} layers left in full precision"
        return text


class ConfigBatch(Sequence[SubnetConfig]):
    """Many subnets of one space as integer arrays; also a ``Sequence[SubnetConfig]``.

    Cost models, encoders and search engines use the arrays (shape ``(n, n_layers)``);
    anything that wants configs indexes the batch and gets SubnetConfig objects, built lazily.

    In a joint space ``arch`` holds each config's gene indices ``(n, genes)``, canonical
    (inactive genes at 0), and the layers a config does not run read 0 bits and form index 0
    (``active`` says which run); ``params``, ``macs``, ``inputs`` and ``channels`` are each
    config's own layer sizes (0 for layers that do not run). Without genes they are the
    space's constants for every config.
    """

    __slots__ = (
        "_active",
        "_configs",
        "_gene_active",
        "_quantities",
        "a_bits",
        "arch",
        "form_index",
        "space",
        "w_bits",
    )

    def __init__(
        self,
        space: ElasticSpace,
        w_bits: IntArray,
        a_bits: IntArray,
        form_index: IntArray,
        configs: list[SubnetConfig] | None = None,
        *,
        arch: IntArray | None = None,
        gene_active: BoolArray | None = None,
        active: BoolArray | None = None,
    ) -> None:
        self.space = space
        self.w_bits = w_bits
        self.a_bits = a_bits
        self.form_index = form_index
        self._configs = configs
        n = w_bits.shape[0]
        if arch is None:
            if space.genes:
                raise InputError("a ConfigBatch of a joint space needs the configs' arch indices")
            arch = np.zeros((n, 0), dtype=np.int64)
        self.arch = arch
        self._gene_active = gene_active
        self._active = active
        self._quantities: dict[str, FloatArray] = {}

    @classmethod
    def from_arrays(
        cls,
        space: ElasticSpace,
        w_bits: npt.ArrayLike,
        a_bits: npt.ArrayLike,
        form_index: npt.ArrayLike,
        *,
        arch: npt.ArrayLike | None = None,
    ) -> ConfigBatch:
        """Build from arrays of bits and canonical form indices (see ``ALL_FORMS``), and in
        a joint space of gene indices ``(n, genes)`` (the largest architecture by default).

        Pinned layers get their pinned bits whatever the arrays say; the result is canonical.
        """
        shape = (-1, space.n_layers)
        w = np.array(w_bits, dtype=np.int64).reshape(shape)
        a = np.array(a_bits, dtype=np.int64).reshape(shape)
        f = np.array(form_index, dtype=np.int64).reshape(shape)
        if not (w.shape == a.shape == f.shape):
            raise InputError("w_bits, a_bits and form_index must have the same shape")
        for index in space.pinned_indices:
            pinned = space.layers[index].pinned
            assert pinned is not None  # pinned_indices holds pinned layers only
            w[:, index], a[:, index] = pinned
        if not space.genes:
            return cls(space, w, a, f)
        if arch is None:
            genes = np.broadcast_to(space.arch_indices("largest"), (len(w), len(space.genes)))
        else:
            genes = np.array(arch, dtype=np.int64).reshape(-1, len(space.genes))
            if len(genes) != len(w):
                raise InputError("arch must have one row per config")
        canonical, gene_active, active = space.activity.evaluate(np.asarray(genes))
        return cls(
            space,
            *_switch_off(w, a, f, active),
            arch=canonical,
            gene_active=gene_active,
            active=active,
        )

    @classmethod
    def from_configs(cls, space: ElasticSpace, configs: Iterable[SubnetConfig]) -> ConfigBatch:
        """Validate each config and stack it."""
        validated = [space.validate(config) for config in configs]
        n = len(validated)
        w = np.zeros((n, space.n_layers), dtype=np.int64)
        a = np.zeros((n, space.n_layers), dtype=np.int64)
        f = np.zeros((n, space.n_layers), dtype=np.int64)
        if not space.genes:
            for row, config in enumerate(validated):
                w[row] = [choice.w_bits for choice in config.choices]
                a[row] = [choice.a_bits for choice in config.choices]
                f[row] = [_FORM_INDEX[choice.form] for choice in config.choices]
            return cls(space, w, a, f, validated)
        genes = space.genes
        arch = np.zeros((n, len(genes)), dtype=np.int64)
        positions = space.gene_positions
        for row, config in enumerate(validated):
            for name, value in config.arch:
                arch[row, positions[name]] = genes[positions[name]].index(value)
        canonical, gene_active, active = space.activity.evaluate(arch)
        for row, config in enumerate(validated):
            columns = np.flatnonzero(active[row])
            w[row, columns] = [choice.w_bits for choice in config.choices]
            a[row, columns] = [choice.a_bits for choice in config.choices]
            f[row, columns] = [_FORM_INDEX[choice.form] for choice in config.choices]
        return cls(
            space, w, a, f, validated, arch=canonical, gene_active=gene_active, active=active
        )

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
        if not self.space.genes:
            return ConfigBatch(
                self.space, self.w_bits[selector], self.a_bits[selector], self.form_index[selector]
            )
        return ConfigBatch(
            self.space,
            self.w_bits[selector],
            self.a_bits[selector],
            self.form_index[selector],
            arch=self.arch[selector],
            gene_active=self.gene_active[selector],
            active=self.active[selector],
        )

    @classmethod
    def concatenate(cls, space: ElasticSpace, batches: Sequence[ConfigBatch]) -> ConfigBatch:
        """One batch of the rows of ``batches`` (all of ``space``), in order."""
        if not batches:
            return ConfigBatch.from_arrays(
                space,
                np.zeros((0, space.n_layers)),
                np.zeros((0, space.n_layers)),
                np.zeros((0, space.n_layers)),
                arch=np.zeros((0, len(space.genes))) if space.genes else None,
            )
        stacked = {
            name: np.concatenate([getattr(batch, name) for batch in batches])
            for name in ("w_bits", "a_bits", "form_index")
        }
        if not space.genes:
            return cls(space, stacked["w_bits"], stacked["a_bits"], stacked["form_index"])
        return cls(
            space,
            stacked["w_bits"],
            stacked["a_bits"],
            stacked["form_index"],
            arch=np.concatenate([batch.arch for batch in batches]),
            gene_active=np.concatenate([batch.gene_active for batch in batches]),
            active=np.concatenate([batch.active for batch in batches]),
        )

    def configs(self) -> list[SubnetConfig]:
        """Every row as a SubnetConfig (built once, then cached)."""
        if self._configs is None:
            interned: dict[tuple[int, int, int], LayerChoice] = {}
            configs: list[SubnetConfig] = []
            archs = self._arch_choices()
            active = self.active if self.space.genes else None
            for row, (w_row, a_row, f_row) in enumerate(
                zip(
                    self.w_bits.tolist(),
                    self.a_bits.tolist(),
                    self.form_index.tolist(),
                    strict=True,
                )
            ):
                choices = []
                for column, key in enumerate(zip(w_row, a_row, f_row, strict=True)):
                    if active is not None and not active[row, column]:
                        continue
                    choice = interned.get(key)
                    if choice is None:
                        choice = LayerChoice(key[0], key[1], ALL_FORMS[key[2]])
                        interned[key] = choice
                    choices.append(choice)
                configs.append(SubnetConfig(tuple(choices), archs[row]))
            self._configs = configs
        return self._configs

    def _arch_choices(self) -> list[ArchChoices]:
        if not self.space.genes:
            return [()] * len(self)
        names = [gene.name for gene in self.space.genes]
        order = np.argsort(names)
        values = self.arch_values.tolist()
        active = self.gene_active.tolist()
        return [
            tuple((names[g], row[g]) for g in order if flags[g])
            for row, flags in zip(values, active, strict=True)
        ]

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

    @property
    def active(self) -> BoolArray:
        """Per layer: whether it runs in the config ``(n, n_layers)`` (all True without genes)."""
        if self._active is None:
            if self.space.genes:
                self._compute_activity()
            else:
                return np.ones(self.w_bits.shape, dtype=bool)
        assert self._active is not None
        return self._active

    @property
    def gene_active(self) -> BoolArray:
        """Per architecture gene: whether it matters in the config ``(n, genes)``."""
        if self._gene_active is None:
            self._compute_activity()
        assert self._gene_active is not None
        return self._gene_active

    def _compute_activity(self) -> None:
        _, self._gene_active, self._active = self.space.activity.evaluate(self.arch)

    @property
    def arch_values(self) -> IntArray:
        """Each config's gene values ``(n, genes)`` (an inactive gene reads its first value)."""
        genes = self.space.genes
        width = max((len(gene.values) for gene in genes), default=1)
        table = np.zeros((len(genes), width), dtype=np.int64)
        for row, gene in enumerate(genes):
            table[row, : len(gene.values)] = gene.values
        result: IntArray = table[np.arange(len(genes))[None, :], self.arch]
        return result

    def _quantity(self, name: str) -> FloatArray:
        if not self.space.genes:
            constants = self.space.layer_arrays[name]
            view: FloatArray = np.broadcast_to(constants, (len(self), len(constants)))
            return view
        if name not in self._quantities:
            tables = self.space.geometry_tables
            self._quantities[name] = tables.quantity(name, self.arch, self.active)
        return self._quantities[name]

    @property
    def params(self) -> FloatArray:
        """Weight elements of every layer per config ``(n, n_layers)`` (0 where it does not run)."""
        return self._quantity("params")

    @property
    def macs(self) -> FloatArray:
        """Multiply-accumulates per sample of every layer per config ``(n, n_layers)``."""
        return self._quantity("macs")

    @property
    def inputs(self) -> FloatArray:
        """Input activation elements per sample of every layer per config ``(n, n_layers)``."""
        return self._quantity("inputs")

    @property
    def channels(self) -> FloatArray:
        """Output channels (per-channel step sizes) of every layer per config ``(n, n_layers)``."""
        return self._quantity("channels")

    def keys(self) -> list[bytes]:
        """One hashable key per row (for caches and duplicate checks)."""
        stacked = np.concatenate([self.w_bits, self.a_bits, self.form_index, self.arch], axis=1)
        contiguous = np.ascontiguousarray(stacked.astype(np.int8))
        return [row.tobytes() for row in contiguous]

    def __repr__(self) -> str:
        return f"ConfigBatch({len(self)} configs of {self.space.n_layers} layers)"


def _switch_off(
    w_bits: IntArray, a_bits: IntArray, form_index: IntArray, active: BoolArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Layers that do not run read 0 bits and form index 0 (the canonical config)."""
    return (
        np.where(active, w_bits, 0),
        np.where(active, a_bits, 0),
        np.where(active, form_index, 0),
    )


class GenomeLayout:
    """Integer genome of a search: weight-bit genes, activation-bit genes, form genes, then
    architecture genes.

    Genes index into the space's bit widths (and into the allowed forms): gene ``k`` of the
    first block is the index of the ``k``-th elastic layer's weight bits in ``space.w_bits``.
    With one allowed form there are no form genes; with several there is one global gene or,
    with ``per_layer``, one per layer (pinned layers included: their forms matter too). A
    joint space adds one gene per architecture gene (the index of its value). Genes that a
    genome's architecture switches off (a skipped block's bits, its kernel) are ignored by
    :meth:`decode` and set to 0 by :meth:`canonical`.
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
                raise InputError("forms must name at least one QuantForm")
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
        self.n_arch_genes = len(space.genes)
        self.arch_start = self.n_bit_genes + n_form_genes
        self.lower = np.zeros(self.arch_start + self.n_arch_genes, dtype=np.int64)
        self.upper = np.concatenate(
            [
                np.full(n_elastic, len(space.w_bits) - 1),
                np.full(n_elastic, len(space.a_bits) - 1),
                np.full(n_form_genes, len(allowed) - 1),
                np.asarray([len(gene.values) - 1 for gene in space.genes], dtype=np.int64),
            ]
        ).astype(np.int64)
        rules = space.activity
        self.conditional = rules.conditional_genes or rules.conditional_layers
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

    @property
    def arch_genes(self) -> slice:
        """The positions of the architecture genes in a genome."""
        return slice(self.arch_start, self.n_genes)

    def decode(self, genomes: npt.ArrayLike) -> ConfigBatch:
        """Configs of a ``(n, n_genes)`` integer array (values are clipped to the bounds)."""
        genes = np.asarray(genomes)
        if genes.ndim == 1:
            genes = genes[None, :]
        if genes.ndim != 2 or genes.shape[1] != self.n_genes:
            raise InputError(f"genomes must have shape (n, {self.n_genes}); got {genes.shape}")
        if genes.dtype.kind not in "iu":
            genes = np.rint(genes)
        genes = np.clip(genes.astype(np.int64, copy=False), self.lower, self.upper)
        n = genes.shape[0]
        n_elastic = len(self.elastic)
        w = np.broadcast_to(self._template_w, (n, self.space.n_layers)).copy()
        a = np.broadcast_to(self._template_a, (n, self.space.n_layers)).copy()
        w[:, self.elastic] = self._w_values[genes[:, :n_elastic]]
        a[:, self.elastic] = self._a_values[genes[:, n_elastic : 2 * n_elastic]]
        if self.n_form_genes == 0:
            f = np.full((n, self.space.n_layers), self._form_values[0], dtype=np.int64)
        else:
            chosen = self._form_values[genes[:, self.n_bit_genes : self.arch_start]]
            f = np.broadcast_to(chosen, (n, self.space.n_layers)).copy()
        if not self.n_arch_genes:
            return ConfigBatch(self.space, w, a, f)
        arch, gene_active, active = self.space.activity.evaluate(genes[:, self.arch_genes])
        return ConfigBatch(
            self.space,
            *_switch_off(w, a, f, active),
            arch=arch,
            gene_active=gene_active,
            active=active,
        )

    def encode(self, batch: ConfigBatch) -> IntArray:
        """Genomes of a batch; raises ValueError for a form this layout does not allow."""
        n_elastic = len(self.elastic)
        genes = np.empty((len(batch), self.n_genes), dtype=np.int64)
        active = batch.active
        w_index = np.vectorize(self._w_lookup.__getitem__, otypes=[np.int64])
        a_index = np.vectorize(self._a_lookup.__getitem__, otypes=[np.int64])
        if len(batch):
            if self.n_arch_genes:
                running = active[:, self.elastic]
                w_bits = np.where(running, batch.w_bits[:, self.elastic], self.space.w_bits[0])
                a_bits = np.where(running, batch.a_bits[:, self.elastic], self.space.a_bits[0])
            else:
                w_bits, a_bits = batch.w_bits[:, self.elastic], batch.a_bits[:, self.elastic]
            genes[:, :n_elastic] = w_index(w_bits)
            genes[:, n_elastic : 2 * n_elastic] = a_index(a_bits)
        form_genes = self._form_lookup[batch.form_index]
        if self.n_arch_genes:
            form_genes = np.where(active, form_genes, 0)
        if (form_genes < 0).any():
            allowed = ", ".join(map(str, self.forms))
            raise InputError(f"a config uses a form outside this genome's forms ({allowed})")
        if self.n_form_genes == 1:
            # the form of a layer that always runs stands for the config's one form
            first = self._always_running_layer()
            shared = form_genes[:, first : first + 1]
            if ((form_genes != shared) & active).any():
                raise InputError("a config mixes forms but this genome has one global form gene")
            genes[:, self.n_bit_genes : self.arch_start] = shared
        elif self.n_form_genes > 1:
            genes[:, self.n_bit_genes : self.arch_start] = form_genes
        genes[:, self.arch_genes] = batch.arch
        return genes

    def _always_running_layer(self) -> int:
        for index, layer in enumerate(self.space.layers):
            if not layer.active_if:
                return index
        raise InputError("the space has no layer that always runs")

    def canonical(self, genomes: IntArray) -> IntArray:
        """The genomes with every gene their architecture switches off set to 0 (its lower
        bound): two genomes of one subnet become equal. Returns the input without genes."""
        if not self.conditional:
            return genomes
        arch, _, active = self.space.activity.evaluate(genomes[:, self.arch_genes])
        result = genomes.copy()
        result[:, self.arch_genes] = arch
        n_elastic = len(self.elastic)
        running = active[:, self.elastic]
        result[:, :n_elastic] = np.where(running, result[:, :n_elastic], 0)
        result[:, n_elastic : self.n_bit_genes] = np.where(
            running, result[:, n_elastic : self.n_bit_genes], 0
        )
        if self.n_form_genes > 1:
            forms = slice(self.n_bit_genes, self.arch_start)
            result[:, forms] = np.where(active, result[:, forms], 0)
        return result

    def random(self, rng: np.random.Generator | int, n: int) -> IntArray:
        """``n`` genomes uniform over the bounds (canonical)."""
        generator = np.random.default_rng(rng)
        genomes = generator.integers(self.lower, self.upper + 1, size=(n, self.n_genes))
        return self.canonical(genomes)
