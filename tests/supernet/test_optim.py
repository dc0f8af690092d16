"""Optimizers and learning-rate schedules: torch's schedulers' values, warmup, resume."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from supernet.data.datasets import build_data
from supernet.files.checkpoint import load_checkpoint
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet
from supernet.training.optim import build_optimizer, build_scheduler, lr_factor

LR = 0.1


def _one_parameter_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def _torch_lrs(scheduler_class: type, steps: int, **kwargs: object) -> list[float]:
    """The learning rate torch's scheduler sets before each of ``steps`` optimizer steps."""
    optimizer = _one_parameter_optimizer()
    scheduler = scheduler_class(optimizer, **kwargs)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def _our_lrs(steps: int, **kwargs: object) -> list[float]:
    factor = lr_factor(**kwargs)  # type: ignore[arg-type]
    return [LR * factor(step) for step in range(steps)]


def test_cosine_equals_torch_cosine_annealing() -> None:
    total = 37
    expected = _torch_lrs(torch.optim.lr_scheduler.CosineAnnealingLR, total + 3, T_max=total)
    ours = _our_lrs(total + 1, schedule="cosine", total_steps=total)
    assert ours == pytest.approx(expected[: total + 1], abs=1e-12)
    assert ours[0] == LR and ours[total] == pytest.approx(0.0, abs=1e-15)


def test_the_default_cosine_is_the_formula_runs_trained_with() -> None:
    """The pinned values of earlier runs came from this factor: it must not move by a bit."""
    total = 250
    factor = lr_factor("cosine", total_steps=total)
    for step in (0, 1, 17, 125, 249, 250, 300):
        assert factor(step) == 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def test_step_equals_torch_step_lr() -> None:
    expected = _torch_lrs(torch.optim.lr_scheduler.StepLR, 40, step_size=7, gamma=0.5)
    ours = _our_lrs(40, schedule="step", total_steps=40, step_size=7, gamma=0.5)
    assert ours == pytest.approx(expected, rel=1e-12)
    assert ours[6] == LR and ours[7] == LR * 0.5 and ours[35] == pytest.approx(LR * 0.5**5)


def test_constant_is_the_rate_after_the_warmup() -> None:
    ours = _our_lrs(12, schedule="constant", total_steps=12, warmup_steps=2)
    assert ours == pytest.approx([0.05] + [LR] * 11, rel=1e-12)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_warmup_is_linear_then_the_schedule_from_its_end(schedule: str) -> None:
    warmup, total = 5, 30
    ours = _our_lrs(
        total, schedule=schedule, total_steps=total, warmup_steps=warmup, gamma=0.5, step_size=10
    )
    # torch's LinearLR from 1/warmup reaches 1 after warmup - 1 steps: (t + 1) / warmup
    linear = _torch_lrs(
        torch.optim.lr_scheduler.LinearLR, warmup, start_factor=1 / warmup, total_iters=warmup - 1
    )
    assert ours[:warmup] == pytest.approx(linear, rel=1e-12)
    assert ours[:warmup] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1], rel=1e-12)
    if schedule == "cosine":
        after = _torch_lrs(
            torch.optim.lr_scheduler.CosineAnnealingLR, total - warmup, T_max=total - warmup
        )
    else:
        after = _torch_lrs(torch.optim.lr_scheduler.StepLR, total - warmup, step_size=10, gamma=0.5)
    assert ours[warmup:] == pytest.approx(after, abs=1e-12)


def test_build_scheduler_counts_epochs_in_steps() -> None:
    optimizer = _one_parameter_optimizer()
    scheduler = build_scheduler(
        optimizer, "step", epochs=6, steps_per_epoch=4, warmup_epochs=1, step_epochs=2, gamma=0.1
    )
    seen = []
    for _ in range(24):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert seen[4:12] == pytest.approx([0.1] * 8)  # epochs 2-3: the first 2 after warmup
    assert seen[12:20] == pytest.approx([0.01] * 8)
    assert seen[20:] == pytest.approx([0.001] * 4)


@pytest.mark.parametrize(
    ("name", "kind", "options"),
    [
        ("adam", torch.optim.Adam, {"weight_decay": 0.01}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.01}),
        ("sgd", torch.optim.SGD, {"weight_decay": 0.01, "momentum": 0.8, "nesterov": True}),
    ],
)
def test_build_optimizer(name: str, kind: type, options: dict[str, object]) -> None:
    optimizer = build_optimizer(
        name,
        [torch.nn.Parameter(torch.zeros(2))],
        lr=0.3,
        momentum=0.8,
        nesterov=name == "sgd",
        weight_decay=0.01,
    )
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.3
    for key, value in options.items():
        assert group[key] == value


def test_train_config_validates_the_optimizer_fields() -> None:
    config = TrainConfig(model="tiny_convnet", dataset="digits", epochs=3)
    for changes, message in [
        ({"optimizer": "rmsprop"}, "optimizer must be one of adam, adamw, sgd"),
        ({"lr_schedule": "poly"}, "lr_schedule must be one of cosine, step, constant"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"nesterov": True}, "nesterov needs optimizer sgd"),
        ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "nesterov needs"),
        ({"warmup_epochs": 3}, "warmup_epochs must be below epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs must be a non-negative integer"),
        ({"lr_step_epochs": 0}, "lr_step_epochs must be a positive integer"),
        ({"lr_gamma": 0.0}, r"lr_gamma must be in \(0, 1\]"),
        ({"start_eval": "yes"}, "start_eval must be true or false"),
    ]:
        with pytest.raises(ValueError, match=message):
            replace(config, **changes)
    # a recipe's warmup stays valid when --epochs 0 only scores the start
    assert replace(config, epochs=0, fp_epochs=1, warmup_epochs=1).warmup_epochs == 1
    sgd = replace(config, optimizer="sgd", nesterov=True, warmup_epochs=1, lr_schedule="step")
    assert TrainConfig.from_dict(sgd.to_dict()) == sgd


TINY = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    epochs=3,
    batch_size=256,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=150,
    bn_images=150,
    quant_init_images=64,
    seed=5,
    device="cpu",
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    nesterov=True,
    warmup_epochs=1,
    lr_schedule="step",
    lr_step_epochs=1,
    lr_gamma=0.5,
    start_eval=False,
)


def test_sgd_warmup_step_run_logs_its_rates_and_resumes_bit_identically(tmp_path: Path) -> None:
    straight = train_supernet(TINY, tmp_path / "straight", progress=False)
    steps = math.ceil(len(build_data(TINY.data_spec()).train) / TINY.batch_size)
    # the rate after each epoch's last step: warmup done, then × 0.5 per epoch
    assert [entry["lr"] for entry in straight.history] == pytest.approx([0.05, 0.025, 0.0125])
    stored = load_checkpoint(tmp_path / "straight" / "supernet.pt")
    group = stored["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["nesterov"]) == (0.9, True)
    assert stored["scheduler"]["last_epoch"] == 3 * steps
    assert all("momentum_buffer" in state for state in stored["optimizer"]["state"].values())
    train_supernet(TINY, tmp_path / "partial", progress=False, stop_after=1)
    resumed = train_supernet(TINY, tmp_path / "partial", resume=True, progress=False)
    for key, value in straight.supernet.state_dict().items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key
    assert [h["loss_low"] for h in resumed.history] == [h["loss_low"] for h in straight.history]
