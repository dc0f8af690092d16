"""The sandwich rule: the bit widths a schedule opens, the subnets of a step, and its gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, LayerChoice, SubnetConfig
from supernet.networks.elastic import Supernet
from supernet.training.amp import autocast, backward
from supernet.training.config import TrainConfig
from supernet.training.losses import guided_loss, wdr_loss


def open_bit_widths(config: TrainConfig, space: ElasticSpace, epoch: int) -> tuple[int, ...]:
    """Weight/activation bit widths open at ``epoch``: all (joint) or a growing suffix
    of the highest ones (progressive: one more bit width per stage, stages of equal length)."""
    bits = sorted(set(space.w_bits) | set(space.a_bits), reverse=True)
    if config.schedule == "joint":
        return tuple(sorted(bits))
    stage_length = max(1, config.epochs // len(bits))
    stage = min(len(bits) - 1, epoch // stage_length)
    return tuple(sorted(bits[: stage + 1]))


def stage_openings(config: TrainConfig, space: ElasticSpace, epoch: int) -> list[tuple[int, int]]:
    """(from_bits, to_bits) inheritances that open at the start of ``epoch``."""
    if config.schedule != "progressive" or epoch == 0:
        return []
    now = open_bit_widths(config, space, epoch)
    before = open_bit_widths(config, space, epoch - 1)
    return [(min(before), bits) for bits in sorted(set(now) - set(before), reverse=True)]


def draw_sandwich(
    space: ElasticSpace,
    rng: np.random.Generator,
    open_bits: Sequence[int],
    *,
    forms: str = "global",
    random_subnets: int = 1,
) -> list[SubnetConfig]:
    """The subnets of one step: highest bits (H), ``random_subnets`` random ones (R), lowest
    bits (L), each with its own randomly drawn form(s).

    In a joint space H is also the largest architecture, L the smallest and every R a random
    one (each gene uniform over its values, drawn after the bits; the choices of the layers
    it switches off are dropped: :meth:`ElasticSpace.canonical`). A space without
    architecture genes draws no genes: its subnets are the bits and forms alone.
    """
    w_open = [b for b in space.w_bits if b in open_bits] or [space.w_bits[-1]]
    a_open = [b for b in space.a_bits if b in open_bits] or [space.a_bits[-1]]
    space_forms = space.forms

    def draw(w_choice: Callable[[], int], a_choice: Callable[[], int], arch: str) -> SubnetConfig:
        global_form = space_forms[int(rng.integers(len(space_forms)))]
        choices = []
        for layer in space.layers:
            form = (
                space_forms[int(rng.integers(len(space_forms)))]
                if forms == "per_layer"
                else global_form
            )
            bits = layer.pinned or (w_choice(), a_choice())
            choices.append(LayerChoice(bits[0], bits[1], form))
        if not space.genes:
            return SubnetConfig(tuple(choices))
        if arch == "random":
            indices = [int(rng.integers(len(gene.values))) for gene in space.genes]
        else:
            indices = [0 if arch == "smallest" else len(g.values) - 1 for g in space.genes]
        values = {gene.name: gene.values[i] for gene, i in zip(space.genes, indices, strict=True)}
        return space.canonical(SubnetConfig(tuple(choices), tuple(values.items())))

    def random_w() -> int:
        return w_open[int(rng.integers(len(w_open)))]

    def random_a() -> int:
        return a_open[int(rng.integers(len(a_open)))]

    high = draw(lambda: w_open[-1], lambda: a_open[-1], "largest")
    randoms = [draw(random_w, random_a, "random") for _ in range(random_subnets)]
    low = draw(lambda: w_open[0], lambda: a_open[0], "smallest")
    return [high, *randoms, low]


def _subnet_step(
    supernet: Supernet,
    subnet: SubnetConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    config: TrainConfig,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (under ``config.amp``'s autocast) and backward of one subnet; returns (loss,
    logits), both detached.

    Backward runs right away so that each subnet's graph is freed before the next forward.
    """
    supernet.set_subnet(subnet)
    with autocast(images.device, config.amp):
        logits = supernet(images)
        loss = guided_loss(
            logits,
            labels,
            teacher,
            mode=config.guidance,
            weight=config.gpg_weight,
            smoothing=config.label_smoothing,
        )
    backward(loss, scaler)
    return loss.detach(), logits.detach()


def sandwich_step(
    supernet: Supernet,
    images: torch.Tensor,
    labels: torch.Tensor,
    subnets: Sequence[SubnetConfig],
    config: TrainConfig,
    quantized_weights: Sequence[torch.Tensor] = (),
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, torch.Tensor]:
    """Accumulate the gradients of one sandwich step (no optimizer step).

    ``subnets`` is ``[H, R_1, ..., R_k, L]`` (see :func:`draw_sandwich`): H learns from the
    labels, every R from H, L from the last R (or H without R); then the WDR terms of
    ``quantized_weights`` (none: WDR off). Every backward is scaled by ``scaler`` where one
    is given (float16 autocast). Returns every loss term, detached and unscaled; on the
    device path (:func:`supernet.runtime.host_path`) nothing in it waits for the device.
    """
    if len(subnets) < 2:
        raise InputError("a sandwich step needs at least the highest and the lowest subnet")
    losses: dict[str, torch.Tensor] = {}
    high, *randoms, low = subnets
    losses["high"], high_logits = _subnet_step(supernet, high, images, labels, None, config, scaler)
    teacher = high_logits
    for index, subnet in enumerate(randoms):
        losses[f"random{index}"], teacher = _subnet_step(
            supernet, subnet, images, labels, high_logits, config, scaler
        )
    if low != high:  # a space of one config (a static QAT baseline) trains it once
        losses["low"], _ = _subnet_step(supernet, low, images, labels, teacher, config, scaler)
    if quantized_weights:
        skew, kurtosis = wdr_loss(quantized_weights, target_kurtosis=config.target_kurtosis)
        backward(config.wdr_skew_weight * skew + config.wdr_kurtosis_weight * kurtosis, scaler)
        losses["wdr_skew"] = skew.detach()
        losses["wdr_kurtosis"] = kurtosis.detach()
    return losses


def loss_log_key(name: str) -> str:
    """The log entry a loss term of :func:`sandwich_step` is averaged into."""
    if name.startswith("random"):
        return "loss_random"
    return f"loss_{name}" if name in ("high", "low") else name
