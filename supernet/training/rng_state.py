"""The random generators a checkpoint keeps for an exact resume: torch's CPU one and the GPU's."""

from __future__ import annotations

from typing import Any

import torch


def training_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """Checkpoint fields of the generators a run on ``device`` draws from.

    ``torch_rng`` is the CPU generator; on CUDA, ``cuda_rng`` is the generator of the
    process's own GPU (the one it trains on). Every rank seeds its GPU's generator alike and
    draws the same numbers from it, so the main process's state stands for all of them.
    """
    fields = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        fields["cuda_rng"] = torch.cuda.get_rng_state(_current(device))
    return fields


def restore_training_rng(stored: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`training_rng_state` saved, for a run continuing on ``device``.

    ``cuda_rng`` goes onto this process's own GPU, whichever number of GPUs the resumed run
    has; a run resumed on the CPU does not use it, and a run that trained on the CPU and
    resumes on CUDA keeps the seeded GPU generator (the two devices' numbers differ anyway).
    """
    torch.set_rng_state(stored["torch_rng"])
    cuda_state = stored.get("cuda_rng")
    if device.type == "cuda" and isinstance(cuda_state, torch.Tensor):
        torch.cuda.set_rng_state(cuda_state, _current(device))


def _current(device: torch.device) -> torch.device:
    """``device`` with its index (``cuda`` alone means the current CUDA device)."""
    if device.index is not None:
        return device
    return torch.device("cuda", torch.cuda.current_device())
