"""The process's place in a torchrun launch (``RANK``, ``WORLD_SIZE``), validated."""

from __future__ import annotations

import os
from collections.abc import Mapping

from eqsearch.errors import InputError

RENDEZVOUS_TIMEOUT_VARIABLE = "EQSEARCH_RENDEZVOUS_TIMEOUT"
DEFAULT_RENDEZVOUS_SECONDS = 300.0
"""How long a process waits for its peers to join (and for a collective) before giving up."""


def _integer(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"the environment variable {name} must be an integer (set by torchrun); got {text!r}"
        ) from None


def launch_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun launch, or ``(0, 1)`` for a single process.

    Raises:
        InputError: ``RANK``/``WORLD_SIZE`` that are not integers, or a rank outside
            ``0..WORLD_SIZE-1``.
    """
    env = os.environ if environ is None else environ
    world = _integer(env, "WORLD_SIZE", 1)
    rank = _integer(env, "RANK", 0)
    if world < 1:
        raise InputError(f"the environment variable WORLD_SIZE must be >= 1; got {world}")
    if not 0 <= rank < world:
        raise InputError(
            f"the environment variable RANK must be in 0..{world - 1} for WORLD_SIZE={world}; "
            f"got {rank}"
        )
    return rank, world


def check_rendezvous(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a multi-process launch that names no rendezvous address.

    ``WORLD_SIZE`` > 1 without ``MASTER_ADDR``/``MASTER_PORT`` (which torchrun sets) means the
    variables were set by hand, and joining the process group would wait for peers that
    never come.

    Raises:
        InputError: naming what is missing and how to launch instead.
    """
    env = os.environ if environ is None else environ
    _, world = launch_environment(env)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if world > 1 and missing:
        raise InputError(
            f"WORLD_SIZE={world} is set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: start several processes with "
            "torchrun (e.g. torchrun --nproc-per-node 2 -m eqsearch ...), or unset "
            "WORLD_SIZE and RANK for one process"
        )


def rendezvous_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The bound on waiting for peers: ``EQSEARCH_RENDEZVOUS_TIMEOUT`` seconds, default 300.

    Raises:
        InputError: the variable is not a positive number.
    """
    env = os.environ if environ is None else environ
    text = env.get(RENDEZVOUS_TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_RENDEZVOUS_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise InputError(
            f"the environment variable {RENDEZVOUS_TIMEOUT_VARIABLE} must be a positive number "
            f"of seconds; got {text!r}"
        )
    return seconds
