"""Drawing subnet configs for a samples file: spread or uniform bits, one seeded stream."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.resources import check_memory, configs_memory_bytes
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace

STRATEGIES = ("spread", "uniform")
FORM_DRAWS = ("global", "per_layer")
DRAW_CHUNK = 256
"""Configs are drawn in chunks of this size, so the first N of the stream do not depend on N."""

_TILT_GRID = np.linspace(-60.0, 60.0, 4801)


def _tilted_choice(
    values: tuple[int, ...],
    targets: npt.NDArray[np.float64],
    columns: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Per row, ``columns`` draws from the max-entropy distribution over ``values`` whose mean
    is the row's target: p(b) ∝ exp(λ·b), λ solved by interpolation."""
    bits = np.asarray(values, dtype=np.float64)
    scaled = (bits - bits.min()) / max(1.0, float(bits.max() - bits.min()))
    logits = _TILT_GRID[:, None] * scaled[None, :]
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    means = (weights * bits).sum(axis=1) / weights.sum(axis=1)
    tilt = np.interp(targets, means, _TILT_GRID)
    row_logits = tilt[:, None] * scaled[None, :]
    probabilities = np.exp(row_logits - row_logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    uniform = rng.random((len(targets), columns))
    chosen = (uniform[:, :, None] > cumulative[:, None, :]).sum(axis=2)
    result: npt.NDArray[np.int64] = np.asarray(values, dtype=np.int64)[chosen]
    return result


CANDIDATES_PER_TARGET = 16
"""Configs drawn around each average-bit target; the one whose averages land nearest is kept."""


def spread_sample(
    space: ElasticSpace, n: int, rng: np.random.Generator, *, forms: str = "global"
) -> ConfigBatch:
    """``n`` subnets spread evenly over the whole range of average bit widths.

    Each subnet draws a weight-bit target and an activation-bit target uniformly between the
    space's smallest and largest bit widths. Around them, :data:`CANDIDATES_PER_TARGET`
    candidates draw each elastic layer's bits from the max-entropy distribution over the
    space's bits with the target as mean, and the candidate whose parameter- and
    input-weighted averages land nearest the targets is kept. Layers still differ, but the
    averages pile up neither in the middle (as independent uniform per-layer draws do) nor
    at the ends (where one large layer decides the average alone). In a joint space each subnet
    also draws a size target in [0, 1], and every candidate's architecture genes are drawn
    around it (index ≈ target × the gene's last index), so shallow-and-narrow and
    deep-and-wide subnets are sampled as often as middling ones.
    """
    if forms not in FORM_DRAWS:
        raise InputError(f"forms must be one of {', '.join(FORM_DRAWS)}; got {forms!r}")
    k = CANDIDATES_PER_TARGET
    w_low, w_high = min(space.w_bits), max(space.w_bits)
    a_low, a_high = min(space.a_bits), max(space.a_bits)
    w_targets = np.repeat(rng.uniform(w_low, w_high, n), k)
    a_targets = np.repeat(rng.uniform(a_low, a_high, n), k)
    w_bits = _tilted_choice(space.w_bits, w_targets, space.n_layers, rng)
    a_bits = _tilted_choice(space.a_bits, a_targets, space.n_layers, rng)
    space_forms = np.asarray([ALL_FORMS.index(form) for form in space.forms], dtype=np.int64)
    shape = (n, 1) if forms == "global" else (n, space.n_layers)
    form_index = np.repeat(
        np.broadcast_to(space_forms[rng.integers(0, len(space_forms), shape)], (n, space.n_layers)),
        k,
        axis=0,
    )
    arch = _spread_arch(space, n, k, rng) if space.genes else None
    candidates = ConfigBatch.from_arrays(space, w_bits, a_bits, form_index, arch=arch)
    w_miss = (costs.average_weight_bits(space, candidates) - w_targets) / max(1, w_high - w_low)
    a_miss = (costs.average_activation_bits(space, candidates) - a_targets) / max(1, a_high - a_low)
    distance = np.nan_to_num(w_miss**2 + a_miss**2).reshape(n, k)
    chosen = np.arange(n) * k + distance.argmin(axis=1)
    return candidates.take(chosen)


def _spread_arch(
    space: ElasticSpace, n: int, candidates: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Gene indices ``(n·candidates, genes)`` drawn around one size target per subnet."""
    targets = np.repeat(rng.uniform(0.0, 1.0, n), candidates)
    sizes = np.asarray([len(gene.values) for gene in space.genes], dtype=np.int64)
    arch = np.zeros((len(targets), len(sizes)), dtype=np.int64)
    for size in np.unique(sizes):
        columns = np.flatnonzero(sizes == size)
        indices = tuple(range(int(size)))
        arch[:, columns] = _tilted_choice(indices, targets * (size - 1), len(columns), rng)
    return arch


def draw_configs(
    space: ElasticSpace, n: int, *, seed: int = 0, strategy: str = "spread", forms: str = "global"
) -> ConfigBatch:
    """The first ``n`` distinct configs of the seeded stream (the rows of a samples file).

    The stream is drawn in fixed chunks, so a larger ``n`` extends a smaller one.

    Raises:
        ValueError: the space has fewer than ``n`` distinct configs the strategy reaches.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    check_memory(configs_memory_bytes(n, space.n_layers, len(space.genes)), f"{n} subnets")
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    kept: list[ConfigBatch] = []
    total = 0
    fruitless = 0
    while total < n:
        if strategy == "spread":
            chunk = spread_sample(space, DRAW_CHUNK, rng, forms=forms)
        else:
            chunk = space.sample(
                rng, DRAW_CHUNK, forms="global" if forms == "global" else "per_layer"
            )
        rows: list[int] = []
        for row, key in enumerate(chunk.keys()):
            if key not in seen and total + len(rows) < n:
                seen.add(key)
                rows.append(row)
        fruitless = 0 if rows else fruitless + 1
        if fruitless >= 20:
            raise InputError(
                f"the space has only about {total} distinct configs that the {strategy!r} "
                f"strategy reaches; asked for n={n}"
            )
        kept.append(chunk.take(np.asarray(rows, dtype=np.int64)))
        total += len(rows)
    return ConfigBatch.concatenate(space, kept)
