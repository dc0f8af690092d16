"""Host synchronisations of a training step: independent of the number of layers."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from supernet import build_supernet
from supernet.runtime import device_path, one_thread
from supernet.training.amp import optimizer_step
from supernet.training.config import TrainConfig
from supernet.training.divergence import LaggedLosses, check_finite
from supernet.training.host_reads import counting_host_reads
from supernet.training.losses import wdr_weights
from supernet.training.sandwich import draw_sandwich, sandwich_step

MAX_READS_PER_STEP = 5


@pytest.fixture(scope="module")
def supernets() -> dict[str, Any]:
    """resnet18 and oqa_mbv3 at 32×32 (their quantizers as built: no calibration needed)."""
    torch.manual_seed(0)
    with one_thread():
        return {
            model: build_supernet(model, num_classes=10, image_size=32)
            for model in ("resnet18", "oqa_mbv3")
        }


def _training_steps(supernet: Any, steps: int, *, forced: bool) -> tuple[int, dict[str, float]]:
    """(host reads, mean losses) of ``steps`` training steps as ``_train_epoch`` runs them,
    at batch 2."""
    supernet = copy.deepcopy(supernet)
    supernet.train()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 7])
    config = TrainConfig(model="resnet18", dataset="digits")
    parameters = list(supernet.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-4)
    space = supernet.space

    def optimizer_counter(tensor: torch.Tensor) -> bool:
        # Adam's step counters live on the host whatever the device: no synchronisation
        return any(tensor is state.get("step") for state in optimizer.state.values())

    with (
        one_thread(),
        device_path(forced),
        counting_host_reads(ignore=optimizer_counter) as reads,
    ):
        losses = LaggedLosses(lambda terms, step: check_finite(terms, 0, step), lagged=forced)
        for step in range(steps):
            subnets = draw_sandwich(space, np.random.default_rng(step), space.w_bits)
            optimizer.zero_grad(set_to_none=True)
            terms = sandwich_step(supernet, images, labels, subnets, config, wdr_weights(supernet))
            losses.add(terms, step)
            optimizer_step(optimizer, parameters, config.grad_clip, None)
        means = losses.means()
    return reads.count, means


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "oqa_mbv3"])
def test_a_training_step_reads_one_value_on_the_device_path(
    supernets: dict[str, Any], model: str
) -> None:
    reads, means = _training_steps(supernets[model], 2, forced=True)
    # one finiteness flag per step and one read of the epoch's sums, for 21 or 65 layers
    assert reads == 2 + 1 <= 2 * MAX_READS_PER_STEP, reads
    assert len(supernets[model].elastic_layers()) > 20
    assert set(means) == {"high", "random0", "low", "wdr_skew", "wdr_kurtosis"}
    assert all(np.isfinite(value) for value in means.values())


@pytest.mark.slow
def test_the_host_path_reads_its_constants_per_layer(supernets: dict[str, Any]) -> None:
    # the count above is the device path's: the CPU kernels read their constants per layer
    reads, _ = _training_steps(supernets["resnet18"], 1, forced=False)
    assert reads > len(supernets["resnet18"].elastic_layers())


def _terms(value: float) -> dict[str, Any]:
    return {"high": torch.tensor(1.0), "low": torch.tensor(value)}


def test_lagged_losses_name_the_step_that_diverged() -> None:
    checked: list[int] = []

    def check(terms: dict[str, torch.Tensor], step: int) -> None:
        checked.append(step)
        check_finite(terms, 4, step)

    losses = LaggedLosses(check, lagged=True)
    losses.add(_terms(2.0), 0)
    assert checked == []  # read one step late
    losses.add(_terms(float("nan")), 1)
    assert checked == [0]
    with pytest.raises(RuntimeError, match=r"loss low became nan at epoch 5, step 2;"):
        losses.add(_terms(3.0), 2)
    losses = LaggedLosses(check, lagged=True)
    losses.add(_terms(2.0), 0)
    losses.add(_terms(float("inf")), 1)
    with pytest.raises(RuntimeError, match=r"became inf at epoch 5, step 2;"):
        losses.means()  # the epoch's last step is checked before its sums are read
    losses = LaggedLosses(check, lagged=False)
    checked.clear()
    losses.add(_terms(2.0), 0)
    losses.add(_terms(4.0), 1)
    assert checked == [0, 1]
    assert losses.means() == {"high": 1.0, "low": 3.0}
