"""Work spread over forked worker processes of one torch thread each, results in order.

Measuring subnets is many independent forward passes; on a CPU, one process per core with one
torch thread each beats one process whose operators split over every core, and by far on a
shared machine: there each parallel operator waits at its barrier until every one of its
threads has had a core (LeNet-5 subnets measured at 3.4/s on one thread and at 0.6/s on two,
load average 9 on 2 cores). Workers are forked, so they start at once with the parent's
supernet and images and load nothing.

A worker dies with its parent (``PR_SET_PDEATHSIG`` on Linux, a watch on the parent's pid
elsewhere): after a ``kill -9`` no worker lives on holding the parent's files and locks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

_PR_SET_PDEATHSIG = 1
_PARENT_POLL_SECONDS = 0.25

_task: Callable[[Any], Any] | None = None
"""The function the workers run; set in the parent just before they are forked."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Worker processes by default: one per usable core, divided among the ranks torchrun
    started on this machine (``LOCAL_WORLD_SIZE``)."""
    text = os.environ.get("LOCAL_WORLD_SIZE", "")
    local_ranks = int(text) if text.isdigit() and int(text) > 0 else 1
    return max(1, usable_cores() // local_ranks)


def can_fork() -> bool:
    """Whether worker processes can be forked here (POSIX)."""
    return "fork" in multiprocessing.get_all_start_methods()


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
            pass
        else:
            if os.getppid() != parent:  # the parent died before prctl
                os._exit(1)
            return

    def watch() -> None:  # pragma: no cover - platforms without prctl
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _start_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    _die_with(parent)


def _run(item: Any) -> Any:
    assert _task is not None, "worker started without a task"
    return _task(item)


def ordered_map(
    function: Callable[[Any], Any], items: Iterable[Any], workers: int
) -> Iterator[Any]:
    """``function(item)`` for every item, computed in ``workers`` processes forked on the
    first ``next()``, yielded in the order of ``items``.

    ``function`` and everything it reads are inherited by the fork, never pickled; items and
    results are. An exception in a worker is raised here at its item; closing the iterator
    early cancels the items not yet started and waits for the running ones.

    Raises:
        ValueError: ``workers < 1``, or forking is not available (see :func:`can_fork`).
    """
    global _task
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if not can_fork():
        raise ValueError("worker processes need the fork start method (POSIX)")
    previous, _task = _task, function
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        futures = [pool.submit(_run, item) for item in items]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _task = previous
