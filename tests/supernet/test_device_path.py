"""The forced device path: a CPU run executes what a GPU runs, with the same numbers."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.evaluation.oracle import subnet_accuracy
from supernet.quantizers import (
    direction_conv,
    fake_quant,
    integer_conv,
    lsq_kernels,
    lsq_row_kernels,
    lsq_weights,
    n2uq_kernels,
    n2uq_ops,
)
from supernet.runtime import device_path, device_path_forced, host_path
from supernet.training.config import TrainConfig
from supernet.training.sandwich import draw_sandwich, sandwich_step

ROOT = Path(__file__).resolve().parents[2]
CONFIG = TrainConfig(model="tiny_convnet", dataset="digits", w_bits=(2, 4, 8), a_bits=(2, 4, 8))


def test_the_switch_and_its_environment_variable() -> None:
    cpu = torch.zeros(1)
    assert host_path(cpu) and not device_path_forced()
    assert not host_path(torch.device("cuda"))
    with device_path():
        assert not host_path(cpu) and device_path_forced()
        with device_path(False):
            assert host_path(torch.device("cpu"))
        assert not host_path(cpu)
    assert host_path(cpu)
    code = "import torch; from supernet.runtime import host_path; print(host_path(torch.zeros(1)))"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "EQSEARCH_DEVICE_PATH": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# every CPU-only shortcut of a training step and of the oracle, by module and name
SHORTCUTS: list[tuple[Any, str]] = [
    (lsq_kernels, "fake_quantize"),
    (lsq_kernels, "fake_quantize_levels"),
    (lsq_kernels, "input_directions"),
    (lsq_kernels, "mask_gradient"),
    (lsq_row_kernels, "quantize_rows"),
    (lsq_row_kernels, "row_gradients"),
    (integer_conv, "integer_conv2d"),
    (lsq_weights, "quantize_weights"),
    (n2uq_kernels, "forward"),
    (n2uq_kernels, "backward"),
    (n2uq_ops, "_grid_counts"),
]


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls: dict[str, int] = {}

    def wrap(module: Any, name: str) -> Callable[..., Any]:
        original = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            key = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
            calls[key] = calls.get(key, 0) + 1
            return original(*args, **kwargs)

        return call

    for module, name in SHORTCUTS:
        monkeypatch.setattr(module, name, wrap(module, name))
    # the layers import quantize_weights by name
    monkeypatch.setattr("supernet.networks.layers.quantize_weights", lsq_weights.quantize_weights)
    sums = fake_quant.as_sum
    monkeypatch.setattr(
        fake_quant,
        "as_sum",
        lambda total: (
            calls.__setitem__(
                "as_sum tensor" if not host_path(total) else "as_sum float",
                calls.get("as_sum tensor" if not host_path(total) else "as_sum float", 0) + 1,
            )
            or sums(total)
        ),
    )
    monkeypatch.setattr("supernet.quantizers.lsq_conv.as_sum", fake_quant.as_sum)
    return calls


def _model(quantizer: str, seed: int = 0) -> tuple[Any, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=3,
        in_channels=1,
        quantizer=quantizer,
        **(
            {}
            if quantizer == "lsq"
            else {"granularities": ("channel",), "w_symmetries": (True,), "a_symmetries": (False,)}
        ),
    )
    images = torch.randn(32, 1, 8, 8)
    labels = torch.randint(0, 3, (32,))
    init_quantizers(supernet, images)
    supernet.train()
    return supernet, images, labels


def _step_and_score(supernet: Any, images: torch.Tensor, labels: torch.Tensor) -> None:
    space = supernet.space
    subnets = draw_sandwich(space, np.random.default_rng(1), space.w_bits)
    sandwich_step(supernet, images, labels, subnets, CONFIG)
    subnet_accuracy(supernet, subnets[0], images, labels, images, batch_size=16)


@pytest.mark.parametrize("quantizer", ["lsq", "n2uq"])
def test_the_device_path_takes_no_cpu_shortcut(
    monkeypatch: pytest.MonkeyPatch, quantizer: str
) -> None:
    calls = _spy(monkeypatch)
    supernet, images, labels = _model(quantizer)
    _step_and_score(supernet, images, labels)
    host_calls = dict(calls)
    calls.clear()
    with device_path():
        _step_and_score(supernet, images, labels)
    if quantizer == "lsq":
        for name in ("fake_quantize", "quantize_rows", "row_gradients", "quantize_weights"):
            assert any(key.endswith(name) for key in host_calls), (name, host_calls)
        assert host_calls.get("as_sum float", 0) > 0
        assert calls.get("as_sum tensor", 0) > 0
    else:
        assert host_calls.get("n2uq_kernels.forward", 0) > 0
    assert set(calls) <= {"as_sum tensor"}, calls


def _gradients(supernet: Any) -> dict[str, torch.Tensor]:
    return {
        name: parameter.grad.clone()
        for name, parameter in supernet.named_parameters()
        if parameter.grad is not None
    }


@pytest.mark.parametrize("quantizer", ["lsq", "n2uq"])
def test_the_device_path_computes_what_the_host_path_does(quantizer: str) -> None:
    host, images, labels = _model(quantizer)
    device = copy.deepcopy(host)
    space = host.space
    configs = [space.uniform(4, 4, form) for form in space.forms]
    configs += draw_sandwich(space, np.random.default_rng(2), space.w_bits, random_subnets=2)
    for config in configs:
        results = []
        for model, forced in ((host, False), (device, True)):
            model.zero_grad(set_to_none=True)
            with device_path(forced):
                model.set_subnet(config)
                loss = torch.nn.functional.cross_entropy(model(images), labels)
                loss.backward()
            results.append((loss.detach(), _gradients(model)))
        (host_loss, host_grads), (device_loss, device_grads) = results
        torch.testing.assert_close(device_loss, host_loss, rtol=1e-5, atol=1e-6)
        assert set(device_grads) == set(host_grads)
        for name, gradient in host_grads.items():
            # float32 sums in another order; some quantizer gradients are sums that cancel
            tolerance = max(1e-4 * float(gradient.abs().max()), 1e-7)
            torch.testing.assert_close(
                device_grads[name], gradient, rtol=1e-3, atol=tolerance, msg=name
            )


def test_first_layer_weight_gradients_take_one_call_on_the_device_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = direction_conv.ConvGeometry.convolution_backward

    def count(self: Any, grad_out: torch.Tensor, x: torch.Tensor, *args: Any) -> Any:
        if x.shape[1] % 3 == 0 and x.shape[1] <= 9:  # the images' blocks (other layers: 8+)
            calls.append(x.shape[1])
        return original(self, grad_out, x, *args)

    monkeypatch.setattr(direction_conv.ConvGeometry, "convolution_backward", count)
    torch.manual_seed(0)
    supernet = build_supernet("tiny_convnet", num_classes=3, in_channels=3)
    images = torch.randn(8, 3, 8, 8)
    supernet.train()
    space = supernet.space
    config = space.uniform(4, 4, QuantForm.parse("channel-asym-asym"))
    # three-channel images: one call per block (image, step and offset directions) on the
    # CPU, all blocks stacked in one call on other devices
    for forced, expected in ((False, [3, 3, 3]), (True, [9])):
        calls.clear()
        supernet.zero_grad(set_to_none=True)
        with device_path(forced):
            supernet.set_subnet(config)
            supernet(images).sum().backward()
        assert calls == expected
