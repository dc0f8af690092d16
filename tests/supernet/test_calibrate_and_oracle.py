"""BN re-calibration and the supernet oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from supernet import build_supernet, init_quantizers
from supernet.evaluation.oracle import SupernetOracle
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state


def test_calibrate_bn_resets_and_re_estimates_cumulatively() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.Dropout(0.9))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1))
        model[1].running_mean.fill_(123.0)
    model[1].momentum = 0.3
    model.eval()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(96, 1, 4, 4, generator=generator) * 3 + 1
    seen = calibrate_bn(model, images, batch_size=32)
    assert seen == 96
    expected_mean = torch.tensor([1.0, -2.0]) * images.mean()
    assert torch.allclose(model[1].running_mean, expected_mean, atol=1e-5)
    # cumulative average of the three batch variances (unbiased), not a momentum blend
    batch_vars = torch.stack([b.var(unbiased=True) for b in images.split(32)])
    expected_var = torch.tensor([1.0, 4.0]) * batch_vars.mean()
    assert torch.allclose(model[1].running_var, expected_var, rtol=1e-4)
    assert model[1].momentum == 0.3 and not model.training and not model[2].training


def test_preserved_bn_state_restores_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    before = model[1].running_mean.clone()
    with preserved_bn_state(model):
        calibrate_bn(model, torch.randn(8, 1, 3, 3) + 5)
        assert not torch.equal(model[1].running_mean, before)
    assert torch.equal(model[1].running_mean, before)


@pytest.fixture(scope="module")
def oracle_setup():
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(60, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (60,), generator=generator)
    init_quantizers(supernet, images)
    return supernet, images, labels


def test_oracle_is_deterministic_cached_and_leaves_the_supernet_as_it_was(oracle_setup) -> None:
    supernet, images, labels = oracle_setup
    space = supernet.space
    configs = [space.largest(), space.smallest(), *space.sample(0, 3)]
    supernet.set_subnet(space.largest())
    supernet.train()
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    ticks: list[int] = []
    oracle = SupernetOracle(
        supernet, images, labels, images[:32], batch_size=16, progress=ticks.append
    )
    first = oracle.evaluate(configs)
    assert ticks == [1, 2, 3, 4, 5]
    assert ((first >= 0) & (first <= 100)).all()
    fresh = SupernetOracle(supernet, images, labels, images[:32], batch_size=16)
    assert np.array_equal(fresh.evaluate(list(reversed(configs))), first[::-1])
    assert supernet.active_subnet() == space.largest() and supernet.training
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(ValueError, match="layer choices"):
        oracle.evaluate([type(configs[0])(configs[0].choices[:2])])


def test_oracle_accuracy_matches_a_manual_evaluation(oracle_setup) -> None:
    supernet, images, labels = oracle_setup
    config = supernet.space.uniform(4, 4)
    oracle = SupernetOracle(supernet, images, labels, images[:32])
    with preserved_bn_state(supernet), supernet.using(config):
        calibrate_bn(supernet, images[:32])
        supernet.eval()
        with torch.no_grad():
            manual = 100.0 * float((supernet(images).argmax(1) == labels).float().mean())
    assert oracle.evaluate([config])[0] == pytest.approx(manual)
