"""Which torch device a ``--device`` value names, checked before anything is loaded onto it."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from eqsearch.errors import InputError
from eqsearch.launcher import BACKEND_VARIABLE, local_rank

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(name: str, environ: Mapping[str, str] | None = None) -> torch.device:
    """The device ``name`` stands for: ``auto`` is CUDA when available, else the CPU.

    Under torchrun (``LOCAL_RANK`` set), ``auto`` and ``cuda`` mean ``cuda:<LOCAL_RANK>``: each
    process on a machine takes its own GPU. A CUDA device with an index becomes the process's
    current device (``torch.cuda.set_device``), where NCCL and tensors made with
    ``device="cuda"`` go.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        environ: the environment to read ``LOCAL_RANK`` from (default ``os.environ``).

    Raises:
        InputError: an unknown name (``tpu``), CUDA (or a CUDA index) this machine lacks, or
            a ``LOCAL_RANK`` past this machine's GPUs.
    """
    text = str(name).strip().lower()
    if text == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        text = "cuda"
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(text)
    if match is None:
        raise InputError(f"--device must be {DEVICE_CHOICES}; got {name!r}")
    if not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine (use cpu)")
    count = torch.cuda.device_count()
    if match[1] is not None:
        index = int(match[1])
        if index >= count:
            raise InputError(f"--device {name}: this machine has {count} CUDA device(s)")
    else:
        local = local_rank(environ)
        if local is None:
            return torch.device("cuda")
        if local >= count:
            raise InputError(
                f"--device {name}: LOCAL_RANK={local} but this machine has {count} CUDA "
                f"device(s); start at most {count} process(es) per machine "
                f"(torchrun --nproc-per-node {count}), or let the ranks share one device "
                f"with --device cuda:0 and {BACKEND_VARIABLE}=gloo"
            )
        index = local
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    return device
