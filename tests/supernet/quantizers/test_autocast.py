"""Quantizers under torch.autocast: exact grids, every quantizer and first/last setting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from supernet import build_supernet, init_quantizers
from supernet.quantizers import QUANTIZERS, level_conv, n2uq_ops
from supernet.quantizers.base import ConvGeometry, autocast_off
from supernet.quantizers.lsq_conv import LsqGrids, lsq_conv2d
from supernet.quantizers.n2uq_ops import n2uq_activation
from supernet.runtime import device_path
from supernet.training.config import TrainConfig
from supernet.training.losses import wdr_weights
from supernet.training.sandwich import draw_sandwich, sandwich_step

FORMS = {
    "lsq": {},
    "n2uq": {"granularities": ("channel",), "w_symmetries": (True,), "a_symmetries": (False,)},
}


def test_every_quantizer_is_covered() -> None:
    assert set(FORMS) == set(QUANTIZERS)


@pytest.mark.parametrize("forced", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("first_last", ["8/8", "fp", "elastic"])
@pytest.mark.parametrize("quantizer", sorted(QUANTIZERS))
def test_a_sandwich_step_runs_under_bfloat16_autocast(
    quantizer: str, first_last: str, forced: bool
) -> None:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet",
        num_classes=3,
        in_channels=1,
        quantizer=quantizer,
        first_last=first_last,
        **FORMS[quantizer],
    )
    images = torch.randn(16, 1, 8, 8)
    labels = torch.randint(0, 3, (16,))
    init_quantizers(supernet, images)
    supernet.train()
    config = TrainConfig(model="tiny_convnet", dataset="digits")
    subnets = draw_sandwich(supernet.space, np.random.default_rng(0), supernet.space.w_bits)
    results = []
    for amp in (False, True):
        supernet.zero_grad(set_to_none=True)
        with device_path(forced), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            losses = sandwich_step(supernet, images, labels, subnets, config, wdr_weights(supernet))
        gradients = {n: p.grad for n, p in supernet.named_parameters() if p.grad is not None}
        results.append((losses, gradients))
    (reference, reference_grads), (losses, gradients) = results
    for name, value in losses.items():
        assert math.isfinite(float(value)), name
        # bfloat16 rounds the logits to 8 significant bits
        assert float(value) == pytest.approx(float(reference[name]), rel=0.05, abs=0.01), name
    assert set(gradients) == set(reference_grads)
    assert all(g.dtype == torch.float32 and bool(g.isfinite().all()) for g in gradients.values())


def _n2uq_eight_bits() -> tuple[torch.Tensor, ...]:
    # 255 intervals of 2/255 from −1 to 1 (input units of α_in = 2/255)
    log_in_scale = torch.full((1,), math.log(2 / 255), requires_grad=True)
    log_out_scale = torch.full((1,), math.log(0.01), requires_grad=True)
    start = torch.full((1,), -127.5, requires_grad=True)
    log_widths = torch.zeros(255, requires_grad=True)
    return log_in_scale, log_out_scale, start, log_widths


@pytest.mark.parametrize("path", ["kernels", "grid", "bucketize"])
def test_n2uq_keeps_every_level_at_eight_bits_under_autocast(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(n2uq_ops, "FUSED_KERNELS", path == "kernels")
    # every bfloat16 value in [-1.1, 1.1]: several per interval
    x = torch.linspace(-1.1, 1.1, 200_001).to(torch.bfloat16).unique().requires_grad_()
    parameters = _n2uq_eight_bits()
    with device_path(path == "bucketize"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = n2uq_activation(x, *parameters)
        reference = n2uq_activation(x.detach().float(), *parameters)
        out.sum().backward()
    assert out.dtype == torch.float32
    assert out.unique().numel() == 256
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def _conv_case(weight_channels: bool, asymmetric: bool) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 9, 9, generator=generator).to(torch.bfloat16).requires_grad_()
    weight = (torch.randn(8, 6, 3, 3, generator=generator) * 0.2).requires_grad_()
    channels = 8 if weight_channels else 1
    return {
        "x": x,
        "weight": weight,
        "bias": torch.randn(8, generator=generator).requires_grad_(),
        "input_log_step": torch.full((1,), math.log(0.3), requires_grad=True),
        "input_offset": torch.full((1,), -2.1, requires_grad=True) if asymmetric else None,
        "weight_log_step": torch.full((channels,), math.log(0.03)).add_(
            torch.rand(channels, generator=generator) * 0.2
        ),
        "weight_offset": None,
    }


@pytest.mark.parametrize("forced", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("weight_channels", [True, False], ids=["channel", "tensor"])
def test_the_fused_convolution_convolves_exact_levels_under_bfloat16(
    monkeypatch: pytest.MonkeyPatch, forced: bool, weight_channels: bool
) -> None:
    calls: list[tuple[torch.dtype, torch.dtype]] = []
    convolve = ConvGeometry.convolve

    def spy(self: ConvGeometry, x: torch.Tensor, weight: torch.Tensor, bias: Any) -> Any:
        calls.append((x.dtype, weight.dtype))
        if x.dtype == torch.bfloat16:  # the operands are integers: the levels themselves
            assert torch.equal(x, x.round()) and torch.equal(weight, weight.round())
            assert float(x.abs().max()) <= 15 and float(weight.abs().max()) <= 8
        return convolve(self, x, weight, bias)

    monkeypatch.setattr(ConvGeometry, "convolve", spy)
    # a 4-bit input: the step gradient of a fine 8-bit grid is a near-total cancellation of
    # rounding errors, whose bfloat16 noise is large relative to it (small in absolute terms)
    grids = LsqGrids(0, 15, 0.01, -8, 7, 0.02)
    geometry = ConvGeometry((1, 1), (1, 1), (1, 1), 1, False)
    results = []
    for amp in (None, torch.bfloat16, torch.float16):
        case = _conv_case(weight_channels, asymmetric=True)
        case["weight_log_step"].requires_grad_()
        with (
            device_path(forced),
            torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=bool(amp)),
            level_conv.bfloat16_levels(),  # as --amp bf16 sets it
        ):
            out = lsq_conv2d(grids=grids, geometry=geometry, **case)
        with device_path(forced):
            (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads = {
            k: v.grad for k, v in case.items() if isinstance(v, torch.Tensor) and v.grad is not None
        }
        results.append((out, grads))
        results_bias = case["bias"].detach()
    assert calls == [
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.bfloat16),
        (torch.float32, torch.float32),
    ]
    (reference, reference_grads), (levels, level_grads), (half, half_grads) = results
    assert reference.dtype == torch.float32 and half.dtype == torch.float32
    assert levels.dtype == torch.bfloat16
    # float32 sums of exact products rounded to bfloat16 (8 significant bits) before the
    # bias is added, and the result rounded once more
    bias = results_bias.view(1, -1, 1, 1)
    bound = 2**-8 * ((reference - bias).abs() + reference.abs()) + 1e-6
    assert bool(((levels.float() - reference).abs() <= bound).all())
    torch.testing.assert_close(half, reference)
    for name, gradient in reference_grads.items():
        assert level_grads[name].dtype == gradient.dtype == half_grads[name].dtype, name
        scale = float(gradient.abs().max())
        # the output gradient scaled by s·s_c is rounded to bfloat16 in the backward
        torch.testing.assert_close(level_grads[name], gradient, rtol=0.02, atol=0.02 * scale)
        torch.testing.assert_close(half_grads[name], gradient)


def test_level_operands_reproduce_the_fake_quantized_weight() -> None:
    steps = torch.tensor([0.031, 0.0077, 0.5])
    levels = torch.randint(-128, 128, (3, 4, 3, 3)).float()
    w_hat = levels * steps.view(-1, 1, 1, 1)
    weight_levels, weight_steps = level_conv.weight_operands(w_hat, steps, 1 / steps)
    assert weight_levels.dtype == torch.bfloat16
    assert torch.equal(weight_levels.float(), levels) and torch.equal(weight_steps, steps)
    x = torch.randn(2, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not level_conv.autocast_levels(x, 16, 16)  # a plain autocast: float32
        with level_conv.bfloat16_levels():
            assert level_conv.autocast_levels(x, 256, 256)
            assert not level_conv.autocast_levels(x, 512, 16)
    with level_conv.bfloat16_levels():
        assert not level_conv.autocast_levels(x, 16, 16)
        with torch.autocast("cpu", dtype=torch.float16):
            assert not level_conv.autocast_levels(x, 16, 16)
    assert F.conv2d is not None


def test_quantized_operands_compute_without_tf32_on_cuda() -> None:
    class OnCuda:  # a tensor's stand-in: only its device is read
        device = torch.device("cuda")

    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with autocast_off(OnCuda()):  # type: ignore[arg-type]
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
        with autocast_off(torch.zeros(1)):  # the CPU: nothing to turn off
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = previous
