"""How much memory a piece of work needs and whether this machine has it, checked up front."""

from __future__ import annotations

import os

from eqsearch.errors import InputError

MEMORY_SHARE = 0.5
"""Largest share of the available memory a single piece of work may plan to use."""


def available_memory_bytes() -> int | None:
    """Memory the kernel could give this process now (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


CONFIG_BYTES = 1024
"""Bytes a config held in memory costs beside its per-layer and per-gene arrays (its key,
its row of costs and objectives, the Python objects that list it)."""

LAYER_BYTES = 256
"""Bytes a config costs per layer: bits and form indices, a LayerChoice, its JSON text."""


def configs_memory_bytes(count: float, n_layers: int, n_genes: int = 0) -> float:
    """A generous estimate of the memory of ``count`` configs of a space held at once."""
    return float(count) * (CONFIG_BYTES + LAYER_BYTES * n_layers + 8 * n_genes)


def _gigabytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**28 else f"{count / 2**20:.0f} MiB"


def check_memory(needed_bytes: float, what: str, *, available: int | None = None) -> None:
    """Refuse work that would need more than :data:`MEMORY_SHARE` of the available memory.

    The one memory guard: every command that sizes an array from its input (a population, a
    count of configs, budget levels, probes, an MLP's width) calls it before allocating.

    Args:
        needed_bytes: an estimate of the work's peak memory.
        what: the work, as the message should name it (``"--population 10000000"``).
        available: the available memory (default: :func:`available_memory_bytes`).

    Raises:
        InputError: the estimate exceeds the share (nothing has been allocated yet).
    """
    free = available_memory_bytes() if available is None else available
    if free is None:
        return
    if needed_bytes > MEMORY_SHARE * free:
        raise InputError(
            f"{what} needs about {_gigabytes(needed_bytes)} of memory; this machine has "
            f"{_gigabytes(free)} available (at most {MEMORY_SHARE:.0%} of it is used)"
        )
