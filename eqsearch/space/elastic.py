"""The elastic space: every layer's choices, the architecture genes, and the named subnets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.numbers import loads_json
from eqsearch.space.architecture import arch_indices, arch_of, canonical_config, check_architecture
from eqsearch.space.arrays import FormsMode, IntArray
from eqsearch.space.batch import ConfigBatch
from eqsearch.space.configs import SubnetConfig
from eqsearch.space.forms import (
    ALL_FORMS,
    FORM_INDEX,
    Granularity,
    LayerChoice,
    QuantForm,
    require_bits,
    require_bool,
    require_tuple_of,
    to_granularity,
)
from eqsearch.space.genes import ActivityRules, ArchGene
from eqsearch.space.genome import GenomeLayout
from eqsearch.space.geometry import GeometryTables
from eqsearch.space.layers import LayerSpec
from eqsearch.space.sampling import random_arch, sample_batch
from eqsearch.space.validation import validate_config

SPACE_VERSION = 1
"""Format version of files written for a space without architecture genes (today's files)."""
JOINT_SPACE_VERSION = 2
"""Format version of files written for a joint architecture × quantization space."""
READABLE_VERSIONS = (SPACE_VERSION, JOINT_SPACE_VERSION)


def _bits_tuple(values: Iterable[object], field_name: str) -> tuple[int, ...]:
    bits = sorted({require_bits(v, field_name, allow_full_precision=False) for v in values})
    if not bits:
        raise InputError(f"{field_name} must hold at least one bit width")
    return tuple(bits)


def _unique_tuple(values: Iterable[Any], field_name: str) -> tuple[Any, ...]:
    unique = tuple(dict.fromkeys(values))
    if not unique:
        raise InputError(f"{field_name} must hold at least one value")
    return unique


VALIDATED_CONFIGS = 64  # valid configs a space remembers (ElasticSpace.validate)


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
        layers = require_tuple_of(
            self.layers, LayerSpec, "ElasticSpace.layers", "at least one LayerSpec"
        )
        if all(layer.pinned is not None for layer in layers):
            raise InputError("ElasticSpace needs at least one layer that is not pinned")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise InputError("ElasticSpace.layers must have unique names")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "w_bits", _bits_tuple(self.w_bits, "ElasticSpace.w_bits"))
        object.__setattr__(self, "a_bits", _bits_tuple(self.a_bits, "ElasticSpace.a_bits"))
        granularities = _unique_tuple(
            (to_granularity(g, "ElasticSpace.granularities") for g in self.granularities),
            "ElasticSpace.granularities",
        )
        object.__setattr__(self, "granularities", granularities)
        for name in ("w_symmetries", "a_symmetries"):
            values = _unique_tuple(
                (require_bool(v, f"ElasticSpace.{name}") for v in getattr(self, name)),
                f"ElasticSpace.{name}",
            )
            object.__setattr__(self, name, values)
        genes = tuple(self.genes)
        object.__setattr__(self, "genes", genes)
        unquantized = tuple(self.unquantized)
        if not all(isinstance(name, str) and name for name in unquantized):
            raise InputError("ElasticSpace.unquantized must hold non-empty strings")
        object.__setattr__(self, "unquantized", unquantized)
        check_architecture(genes, layers)

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
        return arch_indices(self, arch)

    def _arch_of(self, config: SubnetConfig) -> tuple[dict[str, int], list[bool]]:
        """The config's architecture checked against the genes, and which layers run."""
        return arch_of(self, config)

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
        return self.validate(canonical_config(self, config))

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
        """Return ``config`` if it belongs to the space, else raise InputError naming why.
        The last :data:`VALIDATED_CONFIGS` valid configs are remembered: a config passing
        through extraction, the quantized layers and an export's metadata is checked once."""
        if config in self._validated:
            return config
        validate_config(self, config)
        if len(self._validated) >= VALIDATED_CONFIGS:
            self._validated.pop(next(iter(self._validated)))
        self._validated[config] = None
        return config

    @cached_property
    def _validated(self) -> dict[SubnetConfig, None]:
        """Configs found valid, oldest first (a dict keeps insertion order)."""
        return {}

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
            np.full(shape, FORM_INDEX[form]),
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
        batch = sample_batch(self, rng, 1 if n is None else n, forms=forms, form=form)
        return batch[0] if n is None else batch

    def random_arch(self, rng: np.random.Generator, n: int) -> IntArray:
        """``n`` architectures, each gene's index uniform over its values ``(n, genes)``
        (not yet canonical)."""
        return random_arch(self, rng, n)

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
