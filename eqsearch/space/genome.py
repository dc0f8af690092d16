"""The integer genome of a search over a space, and its encoding and decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError
from eqsearch.space.arrays import IntArray
from eqsearch.space.batch import ConfigBatch, switch_off
from eqsearch.space.forms import ALL_FORMS, FORM_INDEX, QuantForm

if TYPE_CHECKING:
    from eqsearch.space.elastic import ElasticSpace


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
        self._form_values = np.asarray([FORM_INDEX[f] for f in allowed], dtype=np.int64)
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
            *switch_off(w, a, f, active),
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
