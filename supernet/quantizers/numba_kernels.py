"""Numba kernels compiled on first use (loaded from numba's cache after the first run)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def plain_jit(numba: Any, **options: Any) -> Any:
    """``numba.njit`` with the options every kernel shares: cached on disk, without the GIL,
    without bounds checks; ``options`` add to them (``parallel``, ``fastmath``)."""
    return numba.njit(cache=True, nogil=True, boundscheck=False, **options)


class NumbaKernels:
    """The compiled kernels of one module, by name.

    Args:
        build: ``build(numba) -> {name: kernel}``, run once, on first use.
        what: the kernels as an error message names them.
    """

    def __init__(self, build: Callable[[Any], Mapping[str, Any]], what: str) -> None:
        self._build = build
        self._what = what
        self._kernels: dict[str, Any] = {}

    def available(self) -> bool:
        """Whether the kernels can run here: numba importable (they are compiled now)."""
        if not self._kernels:
            try:
                import numba
            except ImportError:  # pragma: no cover - numba is a dependency; torch is the fallback
                return False
            self._kernels.update(self._build(numba))
        return True

    def __getitem__(self, name: str) -> Any:
        if not self.available():  # pragma: no cover - callers check available() first
            raise RuntimeError(f"{self._what} need numba")
        return self._kernels[name]
