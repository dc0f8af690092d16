"""Many subnets of one space as integer arrays (also a sequence of SubnetConfig)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space.arrays import ArchChoices, BoolArray, FloatArray, IntArray
from eqsearch.space.configs import SubnetConfig
from eqsearch.space.forms import ALL_FORMS, FORM_INDEX, LayerChoice

if TYPE_CHECKING:
    from eqsearch.space.elastic import ElasticSpace


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
            *switch_off(w, a, f, active),
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
                f[row] = [FORM_INDEX[choice.form] for choice in config.choices]
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
            f[row, columns] = [FORM_INDEX[choice.form] for choice in config.choices]
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
            archs = self.arch_choices()
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

    def arch_choices(self) -> list[ArchChoices]:
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


def switch_off(
    w_bits: IntArray, a_bits: IntArray, form_index: IntArray, active: BoolArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Layers that do not run read 0 bits and form index 0 (the canonical config)."""
    return (
        np.where(active, w_bits, 0),
        np.where(active, a_bits, 0),
        np.where(active, form_index, 0),
    )
