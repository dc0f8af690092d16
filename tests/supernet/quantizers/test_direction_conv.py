"""The direction convolution against autograd through the quantized input itself."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from supernet.quantizers.base import ConvGeometry
from supernet.quantizers.direction_conv import direction_conv2d


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("directions", [1, 2])
# one input channel: the image and its directions stacked in one call; two and three: a call
# per block (see CPU_CHANNELS_PER_CALL)
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_parameter_gradients_are_the_inner_products_with_the_input_gradient(
    bias: bool, directions: int, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = torch.Generator().manual_seed(7)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    x_hat, weight = normal(2, channels, 9, 9), normal(5, channels, 3, 3).requires_grad_()
    offset = normal(5).requires_grad_() if bias else None
    pairs = [(normal(2, channels, 9, 9), normal(1).requires_grad_()) for _ in range(directions)]
    geometry = ConvGeometry((2, 2), (1, 1), (1, 1), 1)
    upstream = normal(2, 5, 5, 5)
    calls = []
    backward = ConvGeometry.convolution_backward
    monkeypatch.setattr(
        ConvGeometry,
        "convolution_backward",
        lambda self, *a: calls.append(a[1].shape[1]) or backward(self, *a),
    )
    out = direction_conv2d(x_hat, weight, offset, geometry, pairs)
    out.backward(upstream)
    monkeypatch.undo()
    # the calls' input channels: every block once, at most three channels a call
    assert sum(calls) == channels * (1 + directions) and max(calls) <= 3
    assert len(calls) == (1 if channels == 1 else 1 + directions)
    # the reference: autograd through x_hat, then ⟨∂L/∂x_hat, D⟩ per parameter
    source = x_hat.clone().requires_grad_()
    reference = F.conv2d(source, weight.detach(), None if offset is None else offset.detach(), 2, 1)
    reference.backward(upstream)
    assert torch.allclose(out, reference, rtol=1e-12, atol=1e-12)
    expected_weight = torch.autograd.grad(F.conv2d(x_hat, weight, None, 2, 1), weight, upstream)[0]
    assert torch.allclose(weight.grad, expected_weight, rtol=1e-10, atol=1e-12)
    if offset is not None:
        assert torch.allclose(offset.grad, upstream.sum((0, 2, 3)), rtol=1e-10)
    for direction, parameter in pairs:
        expected = (source.grad * direction).sum().reshape(1)
        assert torch.allclose(parameter.grad, expected, rtol=1e-10, atol=1e-12)


def test_only_convolutions_of_one_group_are_served() -> None:
    x_hat, weight = torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3)
    with pytest.raises(ValueError, match="groups"):
        direction_conv2d(x_hat, weight, None, ConvGeometry((1, 1), (1, 1), (1, 1), 2), [])
