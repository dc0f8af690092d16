"""WDR and GPG losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from supernet.training.losses import (
    distillation_kl,
    gpg_loss,
    guided_loss,
    standardized_moments,
    wdr_loss,
)


def test_moments_of_known_distributions() -> None:
    # two equiprobable points: skewness 0, kurtosis 1
    two_points = torch.tensor([-1.0, 1.0] * 50)
    skewness, kurtosis = standardized_moments(two_points)
    assert float(skewness) == pytest.approx(0.0, abs=1e-6)
    assert float(kurtosis) == pytest.approx(1.0, rel=1e-5)
    # an evenly spaced grid approximates U(a, b): kurtosis 1.8
    uniform = torch.linspace(-3, 5, 100_001)
    assert float(standardized_moments(uniform)[1]) == pytest.approx(1.8, rel=1e-3)
    # {0 (×3), 4}: mean 1, σ² = 3, skew = (3·(-1)^3 + 27)/4/3^1.5, kurtosis = (3 + 81)/4/9
    lopsided = torch.tensor([0.0, 0.0, 0.0, 4.0])
    skewness, kurtosis = standardized_moments(lopsided)
    assert float(skewness) == pytest.approx(6 / 3**1.5, rel=1e-5)
    assert float(kurtosis) == pytest.approx(84 / 36, rel=1e-5)


def test_wdr_averages_layers_and_separates_terms() -> None:
    layers = [torch.tensor([0.0, 0.0, 0.0, 4.0]), torch.tensor([-1.0, 1.0, -1.0, 1.0])]
    skew, kurtosis = wdr_loss(layers, target_kurtosis=1.8)
    assert float(skew) == pytest.approx(((6 / 3**1.5) ** 2 + 0.0) / 2, rel=1e-5)
    assert float(kurtosis) == pytest.approx(((84 / 36 - 1.8) ** 2 + (1.0 - 1.8) ** 2) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        wdr_loss([])


def test_wdr_gradient_matches_finite_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, dtype=torch.float64, generator=generator).exp().requires_grad_()
    skew, kurtosis = wdr_loss([weight])
    (skew + 0.5 * kurtosis).backward()
    assert weight.grad is not None
    epsilon = 1e-6
    for index in (0, 7, 23):
        shifted = weight.detach().clone()
        shifted[index] += epsilon
        up = sum(t * w for t, w in zip(wdr_loss([shifted]), (1.0, 0.5), strict=True))
        shifted[index] -= 2 * epsilon
        down = sum(t * w for t, w in zip(wdr_loss([shifted]), (1.0, 0.5), strict=True))
        numeric = float(up - down) / (2 * epsilon)
        assert float(weight.grad[index]) == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_wdr_pushes_a_gaussian_toward_uniform() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(5000, generator=generator).requires_grad_()
    optimizer = torch.optim.Adam([weight], lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        skew, kurtosis = wdr_loss([weight])
        (skew + kurtosis).backward()
        optimizer.step()
    assert float(standardized_moments(weight.detach())[1]) == pytest.approx(1.8, abs=0.1)


def test_distillation_kl_is_kl_teacher_student_and_detaches_teacher() -> None:
    student = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    teacher = torch.tensor([[0.1, 1.0, 0.3]], requires_grad=True)
    value = distillation_kl(student, teacher)
    p_teacher = F.softmax(teacher, 1)
    expected = (p_teacher * (F.log_softmax(teacher, 1) - F.log_softmax(student, 1))).sum()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    value.backward()
    assert teacher.grad is None and student.grad is not None


def test_gpg_composition() -> None:
    generator = torch.Generator().manual_seed(2)
    high, random_a, random_b, low = (torch.randn(8, 5, generator=generator) for _ in range(4))
    labels = torch.randint(0, 5, (8,), generator=generator)
    lam = 0.3

    def mixed(student: torch.Tensor, teacher: torch.Tensor) -> float:
        return float(
            lam * distillation_kl(student, teacher) + (1 - lam) * F.cross_entropy(student, labels)
        )

    expected = (
        float(F.cross_entropy(high, labels))
        + mixed(random_a, high)
        + mixed(random_b, high)  # every R learns from H
        + mixed(low, random_b)  # L learns from the last R
    )
    total = gpg_loss(high, [random_a, random_b], low, labels, weight=lam)
    assert float(total) == pytest.approx(expected, rel=1e-6)
    no_random = gpg_loss(high, [], low, labels, weight=lam)
    assert float(no_random) == pytest.approx(
        float(F.cross_entropy(high, labels)) + mixed(low, high), rel=1e-6
    )


def test_guidance_ablation_modes() -> None:
    logits = torch.tensor([[3.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    teacher = torch.tensor([[0.0, 2.0, 0.0]])
    hard = guided_loss(logits, labels, teacher, mode="hard")
    assert float(hard) == pytest.approx(float(F.cross_entropy(logits, labels)))
    smooth = guided_loss(logits, labels, teacher, mode="smooth", smoothing=0.1)
    log_p = F.log_softmax(logits, 1)[0]
    expected = -(0.9 + 0.1 / 3) * log_p[0] - 0.1 / 3 * (log_p[1] + log_p[2])
    assert float(smooth) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="guidance mode"):
        guided_loss(logits, labels, teacher, mode="soft")
    assert not math.isclose(float(guided_loss(logits, labels, teacher)), float(hard))


def test_moments_use_the_population_standard_deviation() -> None:
    """A deliberate choice (README, "How eqsearch differs"): σ divides by n, not n − 1."""
    values = torch.tensor([0.0, 0.0, 0.0, 4.0, 1.0])
    centred = values - values.mean()
    sigma = centred.pow(2).mean().sqrt()
    skewness, kurtosis = standardized_moments(values)
    assert float(skewness) == pytest.approx(float((centred / sigma).pow(3).mean()), rel=1e-6)
    assert float(kurtosis) == pytest.approx(float((centred / sigma).pow(4).mean()), rel=1e-6)


def test_wdr_leaves_the_first_layer_out_as_eq_net() -> None:
    from supernet import build_supernet
    from supernet.training.losses import wdr_weights

    supernet = build_supernet("lenet5", num_classes=10, in_channels=1, image_size=28)
    layers = list(supernet.elastic_layers().values())
    weights = wdr_weights(supernet)
    assert [id(w) for w in weights] == [id(layer.weight) for layer in layers[1:]]
    fp_ends = build_supernet(
        "lenet5", num_classes=10, in_channels=1, image_size=28, first_last="fp"
    )
    # first left out as always, the full-precision last layer too
    fp_layers = list(fp_ends.elastic_layers().values())
    assert [id(w) for w in wdr_weights(fp_ends)] == [id(layer.weight) for layer in fp_layers[1:-1]]
