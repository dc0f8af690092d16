"""Optimizers and learning-rate schedules: Adam, AdamW or SGD; cosine or step after a warmup."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from eqsearch.errors import InputError
from supernet.data.own_data import steps_per_epoch

if TYPE_CHECKING:
    from supernet.data.bundle import DataBundle
    from supernet.networks.elastic import Supernet
    from supernet.training.config import TrainConfig
    from supernet.training.distributed import Distributed

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("cosine", "step", "constant")


def check_optimizer_settings(
    *,
    optimizer: str,
    momentum: float,
    nesterov: bool,
    warmup_epochs: int,
    lr_schedule: str,
    lr_step_epochs: int,
    lr_gamma: float,
    epochs: int,
) -> None:
    """Validate the optimizer and schedule fields of a training config.

    Raises:
        InputError: naming the field and what it accepts.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise InputError(
            f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {lr_schedule!r}"
        )
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise InputError(f"momentum must be a number in [0, 1); got {momentum!r}")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"momentum must be in [0, 1); got {momentum}")
    if not isinstance(nesterov, bool):
        raise InputError(f"nesterov must be true or false; got {nesterov!r}")
    if nesterov and (optimizer != "sgd" or momentum == 0):
        raise InputError("nesterov needs optimizer sgd with momentum > 0")
    for name, value, least in (
        ("warmup_epochs", warmup_epochs, 0),
        ("lr_step_epochs", lr_step_epochs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "a non-negative" if least == 0 else "a positive"
            raise InputError(f"{name} must be {kind} integer; got {value!r}")
    if 0 < epochs <= warmup_epochs:  # epochs 0 only scores the start: nothing to warm up
        raise InputError(
            f"warmup_epochs must be below epochs ({epochs}); got {warmup_epochs} (the schedule "
            "starts after the warmup)"
        )
    if isinstance(lr_gamma, bool) or not isinstance(lr_gamma, (int, float)):
        raise InputError(f"lr_gamma must be a number in (0, 1]; got {lr_gamma!r}")
    if not 0.0 < lr_gamma <= 1.0:
        raise InputError(f"lr_gamma must be in (0, 1]; got {lr_gamma}")


def build_optimizer(
    name: str,
    parameters: Iterable[Any],
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (``adam``, ``adamw`` or ``sgd``) over ``parameters`` (tensors or
    parameter groups; a group's own ``weight_decay`` wins over ``weight_decay``).

    ``momentum`` and ``nesterov`` are SGD's; Adam and AdamW keep torch's betas.
    """
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


def lr_factor(
    schedule: str,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    step_size: int = 1,
    gamma: float = 0.1,
) -> Callable[[int], float]:
    """The learning rate's factor at optimizer step ``t`` (for ``LambdaLR``).

    A linear warmup first — ``(t + 1) / warmup_steps`` for ``t < warmup_steps``, torch's
    ``LinearLR(start_factor=1/warmup_steps)`` — then the schedule, counted from the warmup's
    end: ``cosine`` falls from 1 to 0 over the remaining ``total_steps - warmup_steps`` steps
    (``CosineAnnealingLR``), ``step`` multiplies by ``gamma`` every ``step_size`` steps
    (``StepLR``), ``constant`` stays at 1.
    """
    if schedule not in LR_SCHEDULES:
        raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}")
    decay_steps = max(1, total_steps - warmup_steps)
    size = max(1, step_size)

    def base(step: int) -> float:
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
        if schedule == "constant":
            return 1.0
        return float(gamma ** (step // size))

    if warmup_steps <= 0:
        return base

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return base(step - warmup_steps)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    step_epochs: int = 1,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` of :func:`lr_factor` over ``epochs`` epochs of
    ``steps_per_epoch`` steps (warmup and step size given in epochs). Its state (the step
    count) resumes with ``load_state_dict``; the factor follows from these settings."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lr_factor(
            schedule,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=warmup_epochs * steps_per_epoch,
            step_size=step_epochs * steps_per_epoch,
            gamma=gamma,
        ),
    )


def parameter_groups(supernet: Supernet, weight_decay: float) -> list[dict[str, Any]]:
    """The supernet's parameters in optimizer groups: ``weight_decay`` on weight matrices and
    kernels; none on biases, norms and the quantizers' parameters."""
    decayed, quantizer, other = [], [], []
    for name, parameter in supernet.named_parameters():
        if ".quantizer." in name:
            quantizer.append(parameter)
        elif parameter.ndim > 1:
            decayed.append(parameter)
        else:
            other.append(parameter)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
        {"params": quantizer, "weight_decay": 0.0},
    ]


def optimizer_and_schedule(
    config: TrainConfig,
    parameters: Any,
    data: DataBundle,
    dist: Distributed,
    *,
    weight_decay: float,
    epochs: int,
    warmup_epochs: int = 0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The configured optimizer over ``parameters`` and its per-step learning-rate schedule
    over ``epochs`` epochs of this rank's batches."""
    optimizer = build_optimizer(
        config.optimizer,
        parameters,
        lr=config.lr,
        weight_decay=weight_decay,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    scheduler = build_scheduler(
        optimizer,
        config.lr_schedule,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch(data.train, config.batch_size, dist.world_size),
        warmup_epochs=warmup_epochs,
        step_epochs=config.lr_step_epochs,
        gamma=config.lr_gamma,
    )
    return optimizer, scheduler
