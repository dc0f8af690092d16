"""Training losses: weight distribution regularisation (WDR) and group progressive guidance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from eqsearch.errors import InputError

if TYPE_CHECKING:
    from supernet.networks.elastic import Supernet

TARGET_KURTOSIS = 1.8
"""Kurtosis of a uniform distribution; RobustQuant found it most robust to quantization."""

GUIDANCE_MODES = ("gpg", "hard", "smooth")


def standardized_moments(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Skewness E[((w−μ)/σ)^3] and kurtosis E[((w−μ)/σ)^4] of all elements of ``weight``.

    σ is the population standard deviation (EQ-Net's code divides by the unbiased one): with
    it, a uniform distribution has exactly the target kurtosis 1.8. The two differ by a factor
    ``((n−1)/n)^(3/2)`` on the skewness and ``((n−1)/n)^2`` on the kurtosis: at most 0.8 % on
    the layers WDR regularises in the registered models (the smallest hold 256 weights in
    EfficientNet-B0, 288 in MobileNet-V2, 512 in ResNet-20, 840 in LeNet-5).
    """
    flat = weight.reshape(-1)
    centred = flat - flat.mean()
    variance = centred.pow(2).mean()
    standardized = centred / torch.sqrt(variance + 1e-12)
    squared = standardized.pow(2)
    return (squared * standardized).mean(), squared.pow(2).mean()


def wdr_loss(
    weights: Sequence[torch.Tensor],
    *,
    target_kurtosis: float = TARGET_KURTOSIS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two WDR terms averaged over layers: mean Skew² and mean (Kurt − K_T)².

    EQ-Net's L_WDR = (1/L) Σ (|Skew[w_i]|² + |Kurt[w_i] − K_T|²); the two terms are returned
    separately so that each can carry its own weight.
    """
    if not weights:
        raise InputError("wdr_loss needs at least one weight tensor")
    skew_terms, kurtosis_terms = [], []
    for weight in weights:
        skewness, kurtosis = standardized_moments(weight)
        skew_terms.append(skewness.pow(2))
        kurtosis_terms.append((kurtosis - target_kurtosis).pow(2))
    return torch.stack(skew_terms).mean(), torch.stack(kurtosis_terms).mean()


def wdr_weights(supernet: Supernet) -> list[torch.Tensor]:
    """The latent weights WDR regularises: every quantized elastic layer's but the first.

    EQ-Net leaves the first layer out (it keeps it at 8 bits, as eqsearch's default pins it):
    a layer that sees the raw pixels through 3 input channels has a few hundred weights whose
    skewness and kurtosis say little about its quantization error at 8 bits. Layers pinned to
    full precision are never quantized, so they are left out too.
    """
    pairs = list(zip(supernet.elastic_layers().values(), supernet.space.layers, strict=True))
    return [layer.weight for layer, spec in pairs[1:] if spec.pinned != (32, 32)]


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) of the softmax distributions, batch mean; teacher detached."""
    return F.kl_div(
        F.log_softmax(student_logits, dim=1),
        F.log_softmax(teacher_logits.detach(), dim=1),
        reduction="batchmean",
        log_target=True,
    )


def guided_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    mode: str = "gpg",
    weight: float = 0.5,
    smoothing: float = 0.1,
) -> torch.Tensor:
    """The loss of one subnet of the sandwich.

    - ``gpg``: λ·KL(teacher ‖ subnet) + (1 − λ)·CE with λ = ``weight``; plain CE for the
      subnet without a teacher (the highest-bit one).
    - ``hard``: CE with the labels for every subnet (ablation).
    - ``smooth``: CE with label smoothing ``smoothing`` for every subnet (ablation).
    """
    if mode == "hard" or (mode == "gpg" and teacher_logits is None):
        return F.cross_entropy(logits, labels)
    if mode == "smooth":
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    if mode != "gpg":
        raise InputError(f"guidance mode must be one of {GUIDANCE_MODES}; got {mode!r}")
    assert teacher_logits is not None
    cross_entropy = F.cross_entropy(logits, labels)
    return weight * distillation_kl(logits, teacher_logits) + (1 - weight) * cross_entropy


def gpg_loss(
    high: torch.Tensor,
    randoms: Sequence[torch.Tensor],
    low: torch.Tensor,
    labels: torch.Tensor,
    *,
    weight: float = 0.5,
) -> torch.Tensor:
    """L_GPG = L_H + Σ L_R + L_L for logits computed together (EQ-Net Eq. 7–8).

    H learns from labels; every R from H; L from the last R. Training computes the same
    terms one subnet at a time (to free each graph after its backward); this function is the
    reference composition.
    """
    total = guided_loss(high, labels, None, weight=weight)
    teacher = high
    for random_logits in randoms:
        total = total + guided_loss(random_logits, labels, high, weight=weight)
        teacher = random_logits
    return total + guided_loss(low, labels, teacher, weight=weight)
