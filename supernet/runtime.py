"""Process-level settings: CPU training speed-ups, and the switch that forces the device path."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems
_TRIM_THRESHOLD = 1 << 30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed activation buffers for reuse (Linux only; idempotent).

    A training step allocates and frees many multi-megabyte tensors. By default glibc serves
    those from fresh ``mmap`` pages and returns them to the OS when freed, so every step
    page-faults its whole working set again; on a 2-core CPU that is 10–25 % of a ResNet-20
    step. Raising the mmap and trim thresholds keeps the pages in the heap. Building a
    supernet applies it; ``EQSEARCH_MALLOC_DEFAULTS=1`` in the environment leaves glibc's
    defaults (e.g. to measure the difference). Returns whether the settings were applied.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("EQSEARCH_MALLOC_DEFAULTS") == "1" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _applied


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch CPU ops on the calling thread only, for many small operations in a row.

    Every CPU op on more than 32k elements is split over torch's OpenMP threads, and every
    split ends in a barrier. When the machine is busy, one of the threads is often waiting
    for a core at that barrier while the other spins (libgomp spins up to 300,000 rounds
    before it sleeps), so each small op costs a scheduling delay instead of microseconds:
    the ~4,000 ops of a ResNet-20 quantizer initialisation took 4–52 s on 2 busy cores with
    2 threads (0.8–1.1 s with ``OMP_WAIT_POLICY=passive`` or one thread), whatever the malloc
    settings. The previous thread count is restored on exit.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


DEVICE_PATH_VARIABLE = "EQSEARCH_DEVICE_PATH"
"""``EQSEARCH_DEVICE_PATH=1`` in the environment forces :func:`device_path` for the process."""

_device_path_forced = os.environ.get(DEVICE_PATH_VARIABLE, "").strip() == "1"


def device_path_forced() -> bool:
    """Whether the device path is forced (see :func:`device_path`)."""
    return _device_path_forced


def host_path(where: torch.Tensor | torch.device) -> bool:
    """Whether code working on a tensor (or on a device) ``where`` may take its CPU-only
    shortcuts: the numba kernels, the integer convolution, the shared weight node, Python
    float constants and sums, the oracle's layer cache, worker processes and strided pooling.
    False on other devices, wherever the device path is forced (so that a CPU run executes
    what a GPU runs) and in code that ``torch.compile`` traces."""
    device = where.device if isinstance(where, torch.Tensor) else where
    # what torch.compile traces is the device path: torch ops it can fuse, no numba calls
    return device.type == "cpu" and not _device_path_forced and not torch.compiler.is_compiling()


@contextmanager
def device_path(enabled: bool = True) -> Iterator[None]:
    """Inside: every CPU shortcut is off (:func:`host_path` is False), so the code runs on the
    CPU exactly as on a GPU: torch ops only, quantizer constants and gradient sums as
    tensors, no host synchronisation the GPU would not make. For tests and CI; the previous
    setting is restored on exit. ``EQSEARCH_DEVICE_PATH=1`` forces it for a whole process.
    """
    global _device_path_forced
    previous = _device_path_forced
    _device_path_forced = enabled
    try:
        yield
    finally:
        _device_path_forced = previous


COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of :func:`compiled` functions (tests use a lighter one)."""

_compile_enabled = False
RECOMPILE_LIMIT = 32


@contextmanager
def compiled_quantizers(enabled: bool = True) -> Iterator[None]:
    """Inside: the quantizers' element-wise device-path work runs as ``torch.compile``d
    functions (see :func:`compiled`; ``TrainConfig.compile``). The previous setting is
    restored on exit."""
    global _compile_enabled
    previous = _compile_enabled
    _compile_enabled = enabled
    # a compiled piece may see a few dtypes and layouts (each a graph of its own)
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    limit = getattr(config, name)
    setattr(config, name, max(limit, RECOMPILE_LIMIT))
    try:
        yield
    finally:
        _compile_enabled = previous
        setattr(config, name, limit)


Function = TypeVar("Function", bound=Callable[..., Any])


def compiled(function: Function) -> Function:
    """``function``, run as its ``torch.compile``d twin inside :func:`compiled_quantizers`
    where its first argument (a tensor) is off the host path.

    For the quantizers' chains of element-wise passes (multiply, round, clamp; the backward's
    clip mask and sums): compiled, each chain is one pass over the activation. Its arguments
    are tensors only (constants as 0-d tensors), compiled with dynamic shapes: one graph
    serves every layer and bit width.
    """
    twin: list[Callable[..., Any]] = []

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        if not _compile_enabled or host_path(args[0]) or torch.compiler.is_compiling():
            return function(*args)
        if not twin:
            twin.append(torch.compile(function, dynamic=True, backend=COMPILE_BACKEND))
        return twin[0](*args)

    return call  # type: ignore[return-value]
