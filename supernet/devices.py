"""Which torch device a ``--device`` value names, checked before anything is loaded onto it."""

from __future__ import annotations

import re

import torch

from eqsearch.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` stands for: ``auto`` is CUDA when available, else the CPU.

    Raises:
        InputError: an unknown name (``tpu``), or CUDA (or a CUDA index) this machine lacks.
    """
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise InputError(f"--device must be {DEVICE_CHOICES}; got {name!r}")
    if not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (use cpu)")
    if match[1] is not None and int(match[1]) >= torch.cuda.device_count():
        raise InputError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(text)
