"""Layer geometry that follows architecture genes, and its per-config evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space.genes import ArchGene

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _positive_int(value: object, field_name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{field_name} must be a positive integer; got {value!r}")
    if value < 1:
        raise InputError(f"{field_name} must be a positive integer; got {value!r}")
    return int(value)


@dataclass(frozen=True, init=False)
class Dim:
    """One size of a layer: a constant, or one value per value of an architecture gene.

    ``Dim(96)`` is always 96; ``Dim.by("stage1.block1.expand", {3: 72, 4: 96, 6: 144})`` is
    the expanded width of a block whose expand ratio is that gene; ``Dim.follow(gene)`` is
    the gene's own value (a kernel size).
    """

    gene: str | None
    table: tuple[tuple[int, int], ...]

    def __init__(
        self,
        value: int = 1,
        *,
        gene: str | None = None,
        table: Mapping[int, int] | Iterable[tuple[int, int]] | None = None,
    ) -> None:
        if gene is None:
            object.__setattr__(self, "gene", None)
            object.__setattr__(self, "table", ((0, _positive_int(value, "Dim")),))
            return
        if not isinstance(gene, str) or not gene:
            raise InputError(f"Dim.gene must be a gene name; got {gene!r}")
        items = table.items() if isinstance(table, Mapping) else (table or ())
        pairs: dict[int, int] = {}
        for key, size in items:
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
                raise InputError(f"Dim.by({gene!r}, ...): gene values are integers; got {key!r}")
            pairs[int(key)] = _positive_int(size, f"Dim.by({gene!r}) size of {key!r}")
        if not pairs:
            raise InputError(f"Dim.by({gene!r}, ...) needs a size per value of the gene")
        object.__setattr__(self, "gene", gene)
        object.__setattr__(self, "table", tuple(sorted(pairs.items())))

    @classmethod
    def by(cls, gene: str, sizes: Mapping[int, int]) -> Dim:
        """The size ``sizes[v]`` where gene ``gene`` takes the value ``v``."""
        return cls(gene=gene, table=sizes)

    @classmethod
    def follow(cls, gene: ArchGene) -> Dim:
        """The gene's value itself (a kernel size that is the gene)."""
        return cls(gene=gene.name, table={value: value for value in gene.values})

    @property
    def largest(self) -> int:
        """The size where the gene takes its largest value (the constant for a constant)."""
        return self.table[-1][1]

    @property
    def constant(self) -> int | None:
        """The size when it does not depend on a gene, else None."""
        return self.table[0][1] if self.gene is None else None

    def sizes_for(self, gene: ArchGene) -> tuple[int, ...]:
        """The size per value index of ``gene`` (ValueError naming a value without a size)."""
        sizes = dict(self.table)
        missing = [value for value in gene.values if value not in sizes]
        if missing:
            raise InputError(
                f"Dim.by({gene.name!r}, ...) has no size for the gene's value(s) {missing}"
            )
        return tuple(sizes[value] for value in gene.values)

    def to_json(self) -> Any:
        """An int for a constant, else ``{"gene": ..., "sizes": {"3": 72, ...}}``."""
        if self.gene is None:
            return self.table[0][1]
        return {"gene": self.gene, "sizes": {str(value): size for value, size in self.table}}

    @classmethod
    def from_json(cls, data: Any) -> Dim:
        """Inverse of :meth:`to_json`."""
        if isinstance(data, Mapping):
            if not {"gene", "sizes"} <= set(data) or not isinstance(data["sizes"], Mapping):
                raise InputError(f"a gene-dependent size needs gene and sizes; got {data!r}")
            return cls.by(data["gene"], {int(k): v for k, v in data["sizes"].items()})
        return cls(data)

    def __str__(self) -> str:
        if self.gene is None:
            return str(self.table[0][1])
        return f"{self.gene}->{{{', '.join(f'{v}: {s}' for v, s in self.table)}}}"


@dataclass(frozen=True)
class LayerGeometry:
    """The shape of a conv or linear layer as a function of the architecture genes.

    The cost models read, per config, ``params = out·(in/groups)·kernel²``,
    ``MACs = params·out_positions`` and ``inputs = in·in_positions`` (a depth-wise conv has
    one input channel per group), the same quantities a dummy forward measures for a fixed
    layer.

    Args:
        in_channels, out_channels: channels (features of a linear layer).
        kernel: side of the square kernel (1 for 1×1 convs and linear layers).
        in_positions, out_positions: spatial positions (H·W) of the input and output per
            sample (1 for a linear layer on vectors); a resolution gene scales them.
        depthwise: one group per channel (``in_channels`` must equal ``out_channels``).
        groups: a fixed number of groups otherwise.
    """

    in_channels: Dim
    out_channels: Dim
    kernel: Dim = Dim(1)
    in_positions: Dim = Dim(1)
    out_positions: Dim = Dim(1)
    depthwise: bool = False
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "kernel", "in_positions", "out_positions"):
            value = getattr(self, name)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                object.__setattr__(self, name, Dim(int(value)))
            elif not isinstance(value, Dim):
                raise InputError(f"LayerGeometry.{name} must be a Dim or an int; got {value!r}")
        if not isinstance(self.depthwise, bool):
            raise InputError(
                f"LayerGeometry.depthwise must be True or False; got {self.depthwise!r}"
            )
        object.__setattr__(self, "groups", _positive_int(self.groups, "LayerGeometry.groups"))
        if self.depthwise and (self.in_channels != self.out_channels or self.groups != 1):
            raise InputError(
                "LayerGeometry.depthwise needs in_channels equal to out_channels (and groups 1)"
            )
        for dim in (self.in_channels, self.out_channels):
            constant = dim.constant
            sizes = [constant] if constant is not None else [size for _, size in dim.table]
            if not self.depthwise and any(size % self.groups for size in sizes):
                raise InputError(
                    f"LayerGeometry: channels {dim} are not divisible by groups {self.groups}"
                )

    @property
    def dims(self) -> tuple[Dim, ...]:
        """Every size of the layer."""
        return (
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.in_positions,
            self.out_positions,
        )

    @property
    def genes(self) -> tuple[str, ...]:
        """Names of the genes the layer's shape follows."""
        return tuple(dict.fromkeys(dim.gene for dim in self.dims if dim.gene is not None))

    def _input_per_group(self, in_channels: int) -> int:
        return 1 if self.depthwise else in_channels // self.groups

    def largest(self) -> dict[str, int]:
        """``n_params``, ``macs``, ``n_inputs``, ``out_channels`` with every gene at its
        largest value (what a dummy forward of the largest architecture measures)."""
        params = (
            self.out_channels.largest
            * self._input_per_group(self.in_channels.largest)
            * self.kernel.largest**2
        )
        return {
            "n_params": params,
            "macs": params * self.out_positions.largest,
            "n_inputs": self.in_channels.largest * self.in_positions.largest,
            "out_channels": self.out_channels.largest,
        }

    def factors(self) -> dict[str, tuple[Dim, ...]]:
        """Each cost quantity as a product of sizes (the vectorised evaluation's recipe)."""
        per_group = (Dim(1),) if self.depthwise else (self.in_channels,)
        kernel = (self.kernel, self.kernel)
        groups = () if self.depthwise or self.groups == 1 else (Dim(self.groups),)
        return {
            "params": (self.out_channels, *per_group, *kernel),
            "macs": (self.out_channels, *per_group, *kernel, self.out_positions),
            "inputs": (self.in_channels, self.in_positions),
            "channels": (self.out_channels,),
            "divisor": groups,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; constant sizes are plain ints."""
        data: dict[str, Any] = {
            "in_channels": self.in_channels.to_json(),
            "out_channels": self.out_channels.to_json(),
            "kernel": self.kernel.to_json(),
            "in_positions": self.in_positions.to_json(),
            "out_positions": self.out_positions.to_json(),
        }
        if self.depthwise:
            data["depthwise"] = True
        if self.groups != 1:
            data["groups"] = self.groups
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerGeometry:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not {"in_channels", "out_channels"} <= set(data):
            raise InputError(f"a layer geometry needs in_channels and out_channels; got {data!r}")
        return cls(
            in_channels=Dim.from_json(data["in_channels"]),
            out_channels=Dim.from_json(data["out_channels"]),
            kernel=Dim.from_json(data.get("kernel", 1)),
            in_positions=Dim.from_json(data.get("in_positions", 1)),
            out_positions=Dim.from_json(data.get("out_positions", 1)),
            depthwise=bool(data.get("depthwise", False)),
            groups=int(data.get("groups", 1)),
        )


QUANTITIES = ("params", "macs", "inputs", "channels")
"""The per-layer cost quantities the geometry gives per config."""


class GeometryTables:
    """Per-config ``params``, ``macs``, ``inputs`` and ``channels`` of every layer, vectorised.

    Each quantity of a layer is a product of sizes that follow at most a few genes. Its value
    for every combination of those genes' value indices is computed once, here; all layers'
    tables live in one flat array, so a quantity of a whole batch is a few integer gathers
    (the mixed-radix position of each layer's gene indices) and one float gather.

    Args:
        genes: the space's genes.
        geometries: per layer, its geometry or None (then ``constants`` give its quantities).
        constants: per layer, ``{"params": ..., "macs": ..., "inputs": ..., "channels": ...}``.
    """

    def __init__(
        self,
        genes: Sequence[ArchGene],
        geometries: Sequence[LayerGeometry | None],
        constants: Sequence[Mapping[str, int]],
    ) -> None:
        positions = {gene.name: index for index, gene in enumerate(genes)}
        constant_column = len(genes)
        self._offsets: dict[str, IntArray] = {}
        self._columns: dict[str, IntArray] = {}
        self._strides: dict[str, IntArray] = {}
        flat: list[float] = []
        for quantity in QUANTITIES:
            offsets: list[int] = []
            columns: list[list[int]] = []
            strides: list[list[int]] = []
            for geometry, values in zip(geometries, constants, strict=True):
                offsets.append(len(flat))
                if geometry is None:
                    flat.append(float(values[quantity]))
                    columns.append([])
                    strides.append([])
                    continue
                factors = geometry.factors()
                divisor = int(np.prod([dim.largest for dim in factors["divisor"]] or [1]))
                names = list(dict.fromkeys(d.gene for d in factors[quantity] if d.gene))
                layer_genes = [genes[positions[name]] for name in names]
                grid = np.ones([len(gene.values) for gene in layer_genes], dtype=np.float64)
                for dim in factors[quantity]:
                    if dim.gene is None:
                        grid = grid * dim.largest
                        continue
                    axis = names.index(dim.gene)
                    sizes = np.asarray(dim.sizes_for(genes[positions[dim.gene]]), dtype=np.float64)
                    shape = [1] * len(names)
                    shape[axis] = len(sizes)
                    grid = grid * sizes.reshape(shape)
                if quantity in ("params", "macs"):
                    grid = grid / divisor
                flat.extend(grid.reshape(-1).tolist())
                columns.append([positions[name] for name in names])
                # C order: the last gene varies fastest
                strides.append([int(np.prod(grid.shape[axis + 1 :])) for axis in range(len(names))])
            width = max(1, max(len(c) for c in columns))
            self._offsets[quantity] = np.asarray(offsets, dtype=np.int64)
            self._columns[quantity] = np.asarray(
                [c + [constant_column] * (width - len(c)) for c in columns], dtype=np.int64
            )
            self._strides[quantity] = np.asarray(
                [s + [0] * (width - len(s)) for s in strides], dtype=np.int64
            )
        self.flat = np.asarray(flat, dtype=np.float64)

    def quantity(self, name: str, arch: IntArray, active: npt.NDArray[np.bool_]) -> FloatArray:
        """``(n, layers)`` values of ``name`` for canonical gene indices ``arch`` ``(n, genes)``;
        inactive layers are 0."""
        extended = np.concatenate([arch, np.zeros((arch.shape[0], 1), dtype=np.int64)], axis=1)
        columns, strides = self._columns[name], self._strides[name]
        index = self._offsets[name] + extended[:, columns[:, 0]] * strides[:, 0]
        for j in range(1, columns.shape[1]):
            index += extended[:, columns[:, j]] * strides[:, j]
        result: FloatArray = np.where(active, self.flat[index], 0.0)
        return result
