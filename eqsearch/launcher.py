"""The process's place in a torchrun launch and its rendezvous, validated before torch sees them."""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from eqsearch.errors import InputError

RENDEZVOUS_TIMEOUT_VARIABLE = "EQSEARCH_RENDEZVOUS_TIMEOUT"
DEFAULT_RENDEZVOUS_SECONDS = 300.0
"""How long a process waits for its peers to join (and for a collective) before giving up."""
MIN_RENDEZVOUS_SECONDS = 1.0
MAX_RENDEZVOUS_SECONDS = 86400.0
MAX_WORLD_SIZE = 1 << 20
"""More processes than any job runs: a larger WORLD_SIZE is a typo, not a cluster."""

BACKEND_VARIABLE = "EQSEARCH_DIST_BACKEND"
BACKENDS = ("nccl", "gloo")
CPP_LOG_VARIABLE = "TORCH_CPP_LOG_LEVEL"

# ASCII digits only: int() also takes '+3', ' 3', '1_0' and other scripts' digits ('٣').
_DIGITS = re.compile(r"[0-9]+")


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = environ.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text):
        raise InputError(
            f"the environment variable {name} must be an integer (set by torchrun); got {text!r}"
        )
    value = int(text) if len(text) <= 12 else None
    if value is None or not low <= value <= high:
        raise InputError(
            f"the environment variable {name} must be in {low}..{high} (set by torchrun); "
            f"got {text if len(text) <= 20 else text[:20] + '...'}"
        )
    return value


def launch_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun launch, or ``(0, 1)`` for a single process.

    Raises:
        InputError: ``RANK``/``WORLD_SIZE`` that are not plain integers, a world size outside
            ``1..MAX_WORLD_SIZE``, or a rank outside ``0..WORLD_SIZE-1``.
    """
    env = os.environ if environ is None else environ
    world = _integer(env, "WORLD_SIZE", 1, 1, MAX_WORLD_SIZE)
    rank = _integer(env, "RANK", 0, 0, MAX_WORLD_SIZE)
    if not rank < world:
        raise InputError(
            f"the environment variable RANK must be in 0..{world - 1} for WORLD_SIZE={world}; "
            f"got {rank}"
        )
    return rank, world


def local_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """``LOCAL_RANK`` of a torchrun launch (this process's index on its machine, which picks
    its GPU), or None when the process was not launched by torchrun.

    Raises:
        InputError: not a plain integer, or not below ``WORLD_SIZE`` (and ``LOCAL_WORLD_SIZE``
            where set).
    """
    env = os.environ if environ is None else environ
    if env.get("LOCAL_RANK") is None:
        return None
    _, world = launch_environment(env)
    local_world = _integer(env, "LOCAL_WORLD_SIZE", world, 1, world)
    return _integer(env, "LOCAL_RANK", 0, 0, local_world - 1)


def check_rendezvous(environ: Mapping[str, str] | None = None) -> None:
    """Check the rendezvous of a multi-process launch before torch joins it.

    ``WORLD_SIZE`` > 1 without ``MASTER_ADDR``/``MASTER_PORT`` (which torchrun sets) means the
    variables were set by hand, and joining the process group would wait for peers that
    never come. ``MASTER_PORT`` must be a port number (1..65535) and ``MASTER_ADDR`` a host
    name or address that resolves; ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``, where set, must
    fit the world.

    Raises:
        InputError: naming the variable, its value and what it must be.
    """
    env = os.environ if environ is None else environ
    _, world = launch_environment(env)
    local_rank(env)
    if world <= 1:
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise InputError(
            f"WORLD_SIZE={world} is set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: start several processes with "
            "torchrun (e.g. torchrun --nproc-per-node 2 -m eqsearch ...), or unset "
            "WORLD_SIZE and RANK for one process"
        )
    port = _integer(env, "MASTER_PORT", 0, 1, 65535)
    address = env["MASTER_ADDR"]
    try:
        socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise InputError(
            f"the environment variable MASTER_ADDR names a host that does not resolve: "
            f"{address[:100]!r} ({reason})"
        ) from None


def rendezvous_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The bound on waiting for peers: ``EQSEARCH_RENDEZVOUS_TIMEOUT`` seconds, default 300.

    Raises:
        InputError: the variable is not a number of seconds in 1..86400.
    """
    env = os.environ if environ is None else environ
    text = env.get(RENDEZVOUS_TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_RENDEZVOUS_SECONDS
    try:
        seconds = float(text) if text.isascii() and len(text) <= 32 else math.nan
    except ValueError:
        seconds = math.nan
    if not MIN_RENDEZVOUS_SECONDS <= seconds <= MAX_RENDEZVOUS_SECONDS:
        raise InputError(
            f"the environment variable {RENDEZVOUS_TIMEOUT_VARIABLE} must be a positive number "
            f"of seconds in {MIN_RENDEZVOUS_SECONDS:g}..{MAX_RENDEZVOUS_SECONDS:g}; "
            f"got {text[:40]!r}"
        )
    return seconds


def process_group_backend(device_type: str, environ: Mapping[str, str] | None = None) -> str:
    """The torch.distributed backend for a process training on ``device_type``.

    NCCL for CUDA, gloo for the CPU. ``EQSEARCH_DIST_BACKEND=gloo`` chooses gloo on CUDA too
    (it takes CUDA tensors; NCCL refuses two ranks on one GPU).

    Raises:
        InputError: an unknown backend name, or nccl for a CPU run.
    """
    env = os.environ if environ is None else environ
    chosen = env.get(BACKEND_VARIABLE)
    if chosen is None or chosen == "":
        return "nccl" if device_type == "cuda" else "gloo"
    if chosen not in BACKENDS:
        raise InputError(
            f"the environment variable {BACKEND_VARIABLE} must be one of "
            f"{', '.join(BACKENDS)}; got {chosen[:40]!r}"
        )
    if chosen == "nccl" and device_type != "cuda":
        raise InputError(
            f"{BACKEND_VARIABLE}=nccl serves CUDA tensors only; this run is on the "
            f"{device_type} (unset it, or use --device cuda)"
        )
    return chosen


def quiet_native_logs(debug: bool, environ: MutableMapping[str, str] | None = None) -> None:
    """Keep the C++ libraries' warnings (c10d's connection retries) off the terminal unless
    ``debug`` or the user chose a level (``TORCH_CPP_LOG_LEVEL``); read when torch is
    imported, so call it before."""
    env = os.environ if environ is None else environ
    if not debug:
        env.setdefault(CPP_LOG_VARIABLE, "ERROR")


@contextmanager
def native_stderr_captured(enabled: bool = True) -> Iterator[list[str]]:
    """Send file descriptor 2, where torch's C++ code logs, to a temporary file while the
    block runs; the lines written there are in the yielded list afterwards.

    c10d prints its retries and errors with dozens of C++ stack frames before the exception
    reaches Python; the caller reports one line instead (and shows them under ``--debug``,
    by passing ``enabled=False``).
    """
    lines: list[str] = []
    if not enabled:
        yield lines
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read(1 << 20).decode("utf-8", "replace").splitlines())
