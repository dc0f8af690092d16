"""Training over several processes: gradients, weights, agreement and scores shared by rank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """Rank and world size of this process (1 process when not launched by torchrun).

    ``device`` is where the tensors this process sends to a collective live: its training
    device (NCCL serves CUDA tensors only; gloo takes CPU and CUDA tensors).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0


def distributed_context(device: torch.device | None = None) -> Distributed:
    """The process group's rank and size (collectives on ``device``), or a single process."""
    where = torch.device("cpu") if device is None else device
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size(), where)
    return Distributed(device=where)


def average_gradients(parameters: Sequence[nn.Parameter], dist: Distributed) -> None:
    """Replace every gradient by its mean over the ranks (one flat all-reduce)."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return
    flat = torch._utils._flatten_dense_tensors(gradients).to(dist.device)
    torch.distributed.all_reduce(flat)
    flat /= dist.world_size
    for gradient, synced in zip(
        gradients, torch._utils._unflatten_dense_tensors(flat, gradients), strict=True
    ):
        gradient.copy_(synced)


def broadcast_state(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (in place, on their device)."""
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(tensor, 0)


def all_ranks_true(flag: torch.Tensor, dist: Distributed) -> bool:
    """Whether ``flag`` (a boolean tensor, on any device) holds on every rank; the one host
    read of the answer happens after the collective."""
    agreed = flag.detach().reshape(1).to(dist.device, torch.float32)
    if dist.world_size > 1:
        torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
    return bool(agreed.item() > 0)


def scoring_share(count: int, batch_size: int, dist: Distributed) -> tuple[int, int]:
    """``(start, stop)`` of the images this rank scores out of ``count``: a contiguous run of
    whole ``batch_size`` batches, the batches spread as evenly as possible over the ranks.

    Every batch is the batch one process would score, so the counts add up to its score.
    """
    batches = -(-count // batch_size)
    first = batches * dist.rank // dist.world_size
    last = batches * (dist.rank + 1) // dist.world_size
    return min(count, first * batch_size), min(count, last * batch_size)


def shared_accuracy(
    score: Callable[[int, int], float], count: int, dist: Distributed, *, batch_size: int
) -> float:
    """Top-1 accuracy in percent over ``count`` images, scored in parts by the ranks.

    ``score(start, stop)`` is the accuracy in percent on images ``start:stop``; each rank
    calls it on its :func:`scoring_share` and the correct counts are summed over the ranks
    (an all-reduce on ``dist.device``), which gives every rank the single-process score.
    One process scores everything with ``score(0, count)``.
    """
    if dist.world_size == 1:
        return score(0, count)
    start, stop = scoring_share(count, batch_size, dist)
    images = stop - start
    correct = round(score(start, stop) * images / 100.0) if images else 0
    totals = torch.tensor([correct, images], dtype=torch.int64, device=dist.device)
    torch.distributed.all_reduce(totals)
    correct_total, images_total = (int(value) for value in totals.tolist())
    return 100.0 * correct_total / max(1, images_total)
