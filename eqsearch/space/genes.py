"""Named architecture genes with activity conditions, and their vectorised evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_GENE_VALUES = 127
"""Genes hold their choice as an index stored in one byte (genome and cache keys)."""


def _int_values(values: Iterable[object], field_name: str) -> tuple[int, ...]:
    result = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{field_name} must hold integers; got {value!r}")
        result.append(int(value))
    return tuple(result)


@dataclass(frozen=True)
class Condition:
    """Holds when the architecture gene ``gene`` is active and takes one of ``values``.

    Args:
        gene: the name of an earlier gene of the space.
        values: the values of that gene for which the condition holds.
    """

    gene: str
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.gene, str) or not self.gene:
            raise InputError(f"Condition.gene must be a gene name; got {self.gene!r}")
        values = tuple(sorted(set(_int_values(self.values, "Condition.values"))))
        if not values:
            raise InputError(f"Condition.values must hold at least one value of {self.gene!r}")
        object.__setattr__(self, "values", values)

    def holds(self, arch: Mapping[str, int]) -> bool:
        """Whether the condition holds for one architecture (active genes' values by name)."""
        return self.gene in arch and arch[self.gene] in self.values

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict ``{"gene": ..., "values": [...]}``."""
        return {"gene": self.gene, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not {"gene", "values"} <= set(data):
            raise InputError(f"a condition needs the keys gene, values; got {data!r}")
        return cls(data["gene"], tuple(data["values"]))


def conditions_tuple(conditions: Iterable[Condition], field_name: str) -> tuple[Condition, ...]:
    """Validated conditions, one per gene at most, sorted by gene name."""
    result: dict[str, Condition] = {}
    for condition in conditions:
        if not isinstance(condition, Condition):
            raise InputError(f"{field_name} must hold Condition objects; got {condition!r}")
        if condition.gene in result:
            raise InputError(f"{field_name} names gene {condition.gene!r} twice")
        result[condition.gene] = condition
    return tuple(result[name] for name in sorted(result))


@dataclass(frozen=True)
class ArchGene:
    """One architecture choice of a joint space, e.g. ``stage3.depth`` in ``{2, 3, 4}``.

    Args:
        name: unique name (``"stage3.block2.kernel"``, ``"resolution"``).
        values: the integer values it may take, stored in increasing order; the search
            treats a lower index as the cheaper choice (fewer blocks, narrower, smaller kernel,
            lower resolution), so repair lowers indices to meet budgets.
        active_if: conditions on earlier genes that must all hold for this gene to matter
            (``stage3.block4.kernel`` only when ``stage3.depth`` is 4). An inactive gene is
            not part of the config.
    """

    name: str
    values: tuple[int, ...]
    active_if: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"ArchGene.name must be a non-empty string; got {self.name!r}")
        values = tuple(sorted(set(_int_values(self.values, f"ArchGene {self.name!r} values"))))
        if not values:
            raise InputError(f"ArchGene {self.name!r} needs at least one value")
        if len(values) > MAX_GENE_VALUES:
            raise InputError(
                f"ArchGene {self.name!r} has {len(values)} values; at most {MAX_GENE_VALUES}"
            )
        object.__setattr__(self, "values", values)
        conditions = conditions_tuple(self.active_if, f"ArchGene {self.name!r} active_if")
        if any(condition.gene == self.name for condition in conditions):
            raise InputError(f"ArchGene {self.name!r} cannot depend on itself")
        object.__setattr__(self, "active_if", conditions)

    def at_least(self, value: int) -> Condition:
        """The condition "this gene is ``>= value``" (e.g. a block that runs at depth >= 3)."""
        kept = tuple(v for v in self.values if v >= value)
        if not kept:
            raise InputError(f"gene {self.name!r} never reaches {value}; values {self.values}")
        return Condition(self.name, kept)

    def index(self, value: int) -> int:
        """Position of ``value`` in :attr:`values` (ValueError naming the allowed ones)."""
        try:
            return self.values.index(value)
        except ValueError:
            raise InputError(
                f"gene {self.name!r} takes the values {self.values}; got {value!r}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return {
            "name": self.name,
            "values": list(self.values),
            "active_if": [condition.to_dict() for condition in self.active_if],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchGene:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not {"name", "values"} <= set(data):
            raise InputError(f"an architecture gene needs the keys name, values; got {data!r}")
        return cls(
            data["name"],
            tuple(data["values"]),
            tuple(Condition.from_dict(item) for item in data.get("active_if", ())),
        )


def check_gene_order(genes: Sequence[ArchGene]) -> dict[str, int]:
    """Gene positions by name; ValueError for a repeated name or a condition that names an
    unknown, later or impossible gene value."""
    positions: dict[str, int] = {}
    for index, gene in enumerate(genes):
        if not isinstance(gene, ArchGene):
            raise InputError(f"genes[{index}] must be an ArchGene; got {gene!r}")
        if gene.name in positions:
            raise InputError(f"architecture gene names must be unique; {gene.name!r} repeats")
        for condition in gene.active_if:
            check_condition(condition, genes, positions, f"gene {gene.name!r}")
        positions[gene.name] = index
    return positions


def check_condition(
    condition: Condition, genes: Sequence[ArchGene], positions: Mapping[str, int], where: str
) -> None:
    """ValueError when ``condition`` names a gene not in ``positions`` or values it lacks."""
    if condition.gene not in positions:
        raise InputError(
            f"{where}: its condition names {condition.gene!r}, which is not an earlier "
            "architecture gene of the space"
        )
    gene = genes[positions[condition.gene]]
    missing = sorted(set(condition.values) - set(gene.values))
    if missing:
        raise InputError(
            f"{where}: its condition on {gene.name!r} names values {missing} the gene does not "
            f"take ({gene.values})"
        )


def implied_values(
    conditions: Iterable[Condition], genes: Sequence[ArchGene], positions: Mapping[str, int]
) -> dict[str, frozenset[int]]:
    """The values each gene can still take wherever ``conditions`` hold (conditions of the
    genes they name included): the genes that must then be active, with their values."""
    allowed: dict[str, frozenset[int]] = {}
    pending = list(conditions)
    while pending:
        condition = pending.pop()
        previous = allowed.get(condition.gene)
        values = frozenset(condition.values)
        allowed[condition.gene] = values if previous is None else previous & values
        if previous is None:
            pending.extend(genes[positions[condition.gene]].active_if)
    return allowed


def implies(
    premises: Iterable[Condition],
    conclusions: Iterable[Condition],
    genes: Sequence[ArchGene],
    positions: Mapping[str, int],
) -> bool:
    """Whether every architecture meeting ``premises`` meets ``conclusions`` (a sufficient
    check: each conclusion's gene must be pinned by the premises to a subset of its values)."""
    allowed = implied_values(premises, genes, positions)
    for condition in conclusions:
        values = allowed.get(condition.gene)
        if values is None or not values <= set(condition.values):
            return False
        if not implies(premises, genes[positions[condition.gene]].active_if, genes, positions):
            return False
    return True


class ActivityRules:
    """Which genes and which layers are active, for many architectures at once.

    Built once per space from the genes' and layers' conditions. Architectures are arrays of
    gene *indices* ``(n, genes)``; :meth:`evaluate` returns the active masks and the canonical
    indices (inactive genes at index 0), with a few array gathers per nesting level of the
    conditions and no Python loop over configs.
    """

    def __init__(
        self, genes: Sequence[ArchGene], layer_conditions: Sequence[tuple[Condition, ...]]
    ) -> None:
        positions = {gene.name: index for index, gene in enumerate(genes)}
        self.n_genes = len(genes)
        self.n_layers = len(layer_conditions)
        atoms: dict[Condition, int] = {}
        for conditions in [gene.active_if for gene in genes] + list(layer_conditions):
            for condition in conditions:
                atoms.setdefault(condition, len(atoms))
        width = max((len(gene.values) for gene in genes), default=1)
        # per atom: the gene it reads and, per value index of that gene, whether it holds;
        # flattened so that one gather answers every atom of every architecture
        self.atom_gene = np.asarray([positions[c.gene] for c in atoms], dtype=np.int64)
        table = np.zeros((len(atoms), width), dtype=bool)
        for condition, row in atoms.items():
            gene = genes[positions[condition.gene]]
            for value in condition.values:
                table[row, gene.values.index(value)] = True
        self.atom_table = table.reshape(-1)
        self.atom_offset = np.arange(len(atoms), dtype=np.int64) * width
        # nesting level of every gene: 0 unconditional, else 1 + the deepest gene it reads
        level = np.zeros(len(genes), dtype=np.int64)
        for index, gene in enumerate(genes):
            if gene.active_if:
                level[index] = 1 + max(level[positions[c.gene]] for c in gene.active_if)
        self.gene_level = level
        self.n_levels = int(level.max()) + 1 if len(genes) else 0
        # per gene and per layer, the atoms that must all hold, padded with an always-true atom
        self.gene_atoms = self._atom_lists([gene.active_if for gene in genes], atoms)
        self.layer_atoms = self._atom_lists(list(layer_conditions), atoms)
        self.conditional_genes = any(gene.active_if for gene in genes)
        self.conditional_layers = any(layer_conditions)

    @staticmethod
    def _atom_lists(
        condition_lists: Sequence[tuple[Condition, ...]], atoms: Mapping[Condition, int]
    ) -> IntArray:
        width = max((len(conditions) for conditions in condition_lists), default=0)
        always = len(atoms)
        lists = np.full((len(condition_lists), max(width, 1)), always, dtype=np.int64)
        for row, conditions in enumerate(condition_lists):
            lists[row, : len(conditions)] = [atoms[condition] for condition in conditions]
        return lists

    def _atoms(self, arch: IntArray, gene_active: BoolArray) -> BoolArray:
        """Truth of every atomic condition per architecture, and a last always-true column."""
        holds = self.atom_table[self.atom_offset + arch[:, self.atom_gene]]
        holds &= gene_active[:, self.atom_gene]
        padded: BoolArray = np.concatenate([holds, np.ones((len(arch), 1), dtype=bool)], axis=1)
        return padded

    def evaluate(self, arch: IntArray) -> tuple[IntArray, BoolArray, BoolArray]:
        """Canonical gene indices, active genes ``(n, genes)`` and active layers ``(n, layers)``."""
        n = arch.shape[0]
        gene_active = np.ones((n, self.n_genes), dtype=bool)
        if self.conditional_genes:
            for level in range(1, self.n_levels):
                at_level = np.flatnonzero(self.gene_level == level)
                atoms = self._atoms(arch, gene_active)
                gene_active[:, at_level] = atoms[:, self.gene_atoms[at_level]].all(axis=2)
        canonical = np.where(gene_active, arch, 0)
        if self.conditional_layers:
            atoms = self._atoms(canonical, gene_active)
            layer_active: BoolArray = np.all(atoms[:, self.layer_atoms], axis=2)
        else:
            layer_active = np.ones((n, self.n_layers), dtype=bool)
        return canonical, gene_active, layer_active
