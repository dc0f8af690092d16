"""Divergence of a training run: loss terms checked finite (read one step late on a GPU) and
summed for the log, and the error that stops the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from supernet.runtime import host_path
from supernet.training.distributed import Distributed, all_ranks_true

NOTHING_KEPT = "no checkpoint of this run had been written"
"""What a divergence leaves on disk before the run has saved anything."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left in place."""


def check_finite(
    values: dict[str, torch.Tensor],
    epoch: int,
    step: int,
    dist: Distributed | None = None,
    kept: str = NOTHING_KEPT,
) -> None:
    """Raise :class:`TrainingDiverged` when a loss on any rank is not finite.

    ``epoch`` and ``step`` (counted from 0) and ``kept`` (what the run leaves on disk, see
    :func:`kept_message`) go into the message.

    The check stays on the losses' device until one read of the answer; every rank must
    stop together, or the others would wait in the next all-reduce forever.
    """
    finite = torch.isfinite(torch.cat([value.detach().reshape(-1) for value in values.values()]))
    if all_ranks_true(finite.all(), dist or Distributed(device=finite.device)):
        return
    bad = {name: float(value) for name, value in values.items() if not torch.isfinite(value).all()}
    name, value = next(iter(bad.items())) if bad else ("on another rank", float("nan"))
    raise TrainingDiverged(
        f"loss {name} became {value} at epoch {epoch + 1}, step {step + 1}; "
        f"training stopped: {kept} (try a lower --lr)"
    )


def kept_message(out: Path | None, epoch: int, dist: Distributed, pretrained: bool) -> str:
    """What a divergence in supernet epoch ``epoch`` (from 0) leaves on disk, in words: the
    run writes into ``out`` (None: nowhere) and ``pretrained`` says an ``fp.pt`` of a finished
    pretraining is there."""
    if out is None or not dist.is_main:
        return "nothing is saved by this process"
    if epoch > 0:
        return f"the checkpoint of epoch {epoch} is kept"
    if pretrained:
        return "fp.pt of the finished pretraining is kept; no supernet epoch was saved"
    return NOTHING_KEPT


Check = Callable[[dict[str, torch.Tensor], int], None]
"""Raises for non-finite loss terms of a step: ``check(terms, step)``."""


class LaggedLosses:
    """The loss terms of an epoch's steps, checked and summed on the host one step late.

    Each step's terms are copied to the host as they are queued (one non-blocking copy into
    pinned memory and an event, on a GPU); the next step, once its own work is queued, waits
    for that event only and then checks and sums them there. Reading a GPU value at once
    would make the host wait for all queued work and leave the GPU idle until the next step's
    first kernels arrive; this way the loop never waits for the step it has just queued. On
    the host path (CPU tensors) the terms are checked as soon as they are added.

    Args:
        check: raises for a step's non-finite terms (called with host tensors).
        lagged: read one step late (the device path); False: at once.
    """

    def __init__(self, check: Check, *, lagged: bool) -> None:
        self.check = check
        self.lagged = lagged
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self._pending: tuple[list[str], torch.Tensor, Any, int] | None = None

    @classmethod
    def for_device(cls, check: Check, device: torch.device) -> LaggedLosses:
        """Lagged wherever the host path does not run."""
        return cls(check, lagged=not host_path(device))

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Queue ``terms`` (0-d tensors) of ``step``; checks and sums the previous step's
        (or, unlagged, these)."""
        names = list(terms)
        stacked = torch.stack([value.detach().reshape(()).float() for value in terms.values()])
        event = None
        if stacked.device.type == "cuda":
            stacked = stacked.to("cpu", non_blocking=True)  # into pinned memory
            event = torch.cuda.Event()
            event.record()
        elif stacked.device.type != "cpu":
            stacked = stacked.cpu()
        previous, self._pending = self._pending, (names, stacked, event, step)
        if previous is not None:
            self._settle(*previous)
        if not self.lagged:
            self.flush()

    def flush(self) -> None:
        """Check and sum the step still pending (at the end of an epoch)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._settle(*pending)

    def _settle(self, names: list[str], stacked: torch.Tensor, event: Any, step: int) -> None:
        if event is not None:
            event.synchronize()
        self.check(dict(zip(names, stacked.unbind(), strict=True)), step)
        for name, value in zip(names, stacked.unbind(), strict=True):
            total = self.sums.get(name)
            self.sums[name] = value.double() if total is None else total + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, group: Callable[[str], str] = lambda name: name) -> dict[str, float]:
        """Each group's mean over its terms' values (one read of all sums)."""
        self.flush()
        names = list(self.sums)
        if not names:
            return {}
        values = torch.stack(list(self.sums.values())).tolist()
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for name, value in zip(names, values, strict=True):
            key = group(name)
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + self.counts[name]
        return {key: totals[key] / counts[key] for key in totals}
