"""Counting the reads of tensor values into Python: each is a host synchronisation on a GPU."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist")
"""The ``torch.Tensor`` methods that hand a tensor's values to Python (a GPU must finish the
work queued before them)."""


@dataclass
class HostReads:
    """What :func:`counting_host_reads` saw: the number of reads and where they came from."""

    count: int = 0
    sites: Counter[str] = field(default_factory=Counter)
    """``file:line`` of the caller of each read (outside torch's own Python files)."""


def _caller() -> str:
    frame: Any = sys._getframe(2)
    while frame is not None and "/torch/" in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@contextmanager
def counting_host_reads(
    ignore: Callable[[torch.Tensor], bool] | None = None,
) -> Iterator[HostReads]:
    """Inside: every :data:`READS` call on a tensor is counted (and still answered).

    Args:
        ignore: tensors whose reads are not host synchronisations on a GPU either (e.g. an
            optimizer's step counters, which torch keeps on the host); None counts all.

    Yields:
        The :class:`HostReads` being filled. Not thread-safe: for tests and benchmarks.
    """
    reads = HostReads()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name: str) -> Callable[..., Any]:
        original = originals[name]

        def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if ignore is None or not ignore(tensor):
                reads.count += 1
                reads.sites[_caller()] += 1
            return original(tensor, *args, **kwargs)

        return read

    for name in READS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
