"""The start of a supernet from full precision: FP pretraining and the channel order it leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from supernet.data.bundle import DataBundle
from supernet.networks.elastic import Supernet
from supernet.training.config import TrainConfig
from supernet.training.distributed import Distributed, average_gradients, broadcast_state
from supernet.training.divergence import NOTHING_KEPT, check_finite
from supernet.training.optim import optimizer_and_schedule
from supernet.training.progress import Progress
from supernet.training.rng_state import restore_training_rng, training_rng_state
from supernet.training.scoring import epoch_accuracy


def fp_pretrain(
    supernet: Supernet,
    data: DataBundle,
    config: TrainConfig,
    device: torch.device,
    dist: Distributed,
    progress: Progress,
    stored: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Plain cross-entropy training of the full-precision model for ``fp_epochs``.

    ``save`` is called after every epoch with the fields of an ``fp.pt`` checkpoint (the
    optimizer state while epochs remain); ``stored`` is such a checkpoint to continue from
    (its weights are loaded already). Returns the FP history, including the stored part.
    """
    supernet.set_subnet(None)
    parameters = [p for n, p in supernet.named_parameters() if ".quantizer." not in n]
    optimizer, scheduler = optimizer_and_schedule(
        config, parameters, data, dist, weight_decay=config.weight_decay, epochs=config.fp_epochs
    )
    history: list[dict[str, Any]] = []
    first_epoch = 0
    if stored is not None:
        history = [entry for entry in stored.get("history", []) if entry.get("phase") == "fp"]
        first_epoch = int(stored.get("fp_epoch", config.fp_epochs))
        restore_training_rng(stored, device)
        if first_epoch < config.fp_epochs:
            optimizer.load_state_dict(stored["optimizer"])
            scheduler.load_state_dict(stored["scheduler"])
    calibration = data.calibration_source(config.bn_images)
    task = progress.add("FP pretraining", config.fp_epochs)
    progress.update(task, completed=first_epoch)
    for epoch in range(first_epoch, config.fp_epochs):
        supernet.train()
        start = time.perf_counter()
        total, batches = 0.0, 0
        for step, (images, labels) in enumerate(
            data.train.batches(epoch, dist.rank, dist.world_size)
        ):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(supernet(images), labels)
            check_finite(
                {"fp_cross_entropy": loss.detach()},
                epoch,
                step,
                dist,
                f"the fp.pt of pretraining epoch {epoch} is kept"
                if save is not None and epoch > 0
                else NOTHING_KEPT,
            )
            loss.backward()
            if dist.world_size > 1:
                average_gradients(parameters, dist)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_value_(parameters, config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            batches += 1
        if dist.world_size > 1:
            broadcast_state(supernet)
        accuracy = epoch_accuracy(supernet, None, data.holdout, calibration, dist)
        history.append(
            {
                "phase": "fp",
                "epoch": epoch + 1,
                "loss": total / max(1, batches),
                "acc_fp": accuracy,
                "seconds": time.perf_counter() - start,
            }
        )
        progress.update(task, advance=1, status=f"FP acc {accuracy:.2f}%")
        if save is not None:
            finished = epoch + 1 == config.fp_epochs
            fields: dict[str, Any] = {
                "history": history,
                "fp_epoch": epoch + 1,
                "complete": finished,
                **training_rng_state(device),
            }
            if not finished:  # a finished fp.pt needs no optimizer state: keep it small
                fields["optimizer"] = optimizer.state_dict()
                fields["scheduler"] = scheduler.state_dict()
            save(fields)
    progress.remove(task)
    return history


def reorder_channels(supernet: Supernet) -> bool:
    """Sort an elastic-architecture model's channels by importance (OFA), where it can: the
    widest subnet is unchanged, every narrower width keeps the most important channels.
    Returns whether the model did. Run on trained full-precision weights, before the
    quantizers are initialised (their per-channel entries are not permuted)."""
    reorder = getattr(supernet.model, "reorder_channels", None)
    if reorder is None:
        return False
    reorder()
    return True
