"""HAWQ sensitivities: Hutchinson traces against explicit Hessians, quantization errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.space import LayerChoice, QuantForm
from supernet import init_quantizers, to_supernet
from supernet.evaluation.sensitivity import (
    activation_errors,
    hessian_sensitivities,
    hutchinson_traces,
    weight_errors,
)
from supernet.networks.elastic import Supernet

TENSOR_SYM = QuantForm("tensor", True, True)
CHANNEL_ASYM = QuantForm("channel", False, False)


def tiny_supernet() -> tuple[Supernet, torch.Tensor, torch.Tensor]:
    """Three linear layers with tanh (a curved loss), all elastic, and a batch of data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    supernet = to_supernet(
        model, example_input=torch.zeros(2, 6), first_last="elastic", build_info={}
    )
    images = torch.randn(8, 6)
    labels = torch.randint(0, 3, (8,))
    init_quantizers(supernet, images)
    supernet.eval()
    return supernet, images, labels


def joint_hessian(
    supernet: Supernet, images: torch.Tensor, labels: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], ...]:
    """The explicit Hessian of the loss over every weight and every layer input at once
    (written out by hand: three linear layers with tanh between them), in blocks."""
    layers = [supernet.model[0], supernet.model[2], supernet.model[4]]
    biases = [layer.bias.detach() for layer in layers]

    def loss_of(*tensors: torch.Tensor) -> torch.Tensor:
        weights, deltas = tensors[:3], tensors[3:]
        hidden = images
        for index in range(3):
            hidden = (hidden + deltas[index]) @ weights[index].T + biases[index]
            if index < 2:
                hidden = torch.tanh(hidden)
        return F.cross_entropy(hidden, labels)

    with torch.no_grad():
        first = torch.tanh(layers[0](images))
        second = torch.tanh(layers[1](first))
    inputs = (
        *(layer.weight.detach() for layer in layers),
        torch.zeros_like(images),
        torch.zeros_like(first),
        torch.zeros_like(second),
    )
    blocks = torch.autograd.functional.hessian(loss_of, inputs)
    sizes = [tensor.numel() for tensor in inputs]
    return tuple(
        tuple(blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(6)) for i in range(6)
    )


def estimator_noise(blocks: tuple[tuple[torch.Tensor, ...], ...], target: int, m: int) -> float:
    """Standard error over ``m`` probes of ``v_tᵀ(Hv)_t`` with independent Rademacher ``v``
    on every tensor: ``2·(‖H_tt‖_F² − Σ diag²) + Σ_{k≠t} ‖H_tk‖_F²``, over ``m``."""
    own = blocks[target][target]
    variance = 2 * ((own**2).sum() - (torch.diagonal(own) ** 2).sum())
    variance += sum((blocks[target][k] ** 2).sum() for k in range(6) if k != target)
    return float(torch.sqrt(variance / m))


@pytest.mark.slow
def test_hutchinson_traces_match_the_explicit_hessian_within_the_estimators_error() -> None:
    supernet, images, labels = tiny_supernet()
    estimate = hutchinson_traces(supernet, images, labels, probes=160, batch_size=8, seed=1)
    assert estimate.samples == 160
    blocks = joint_hessian(supernet, images, labels)
    for layer in range(3):
        for target, found, error in (
            (layer, estimate.weight, estimate.weight_error),
            (3 + layer, estimate.activation, estimate.activation_error),
        ):
            exact = float(torch.trace(blocks[target][target]))
            noise = estimator_noise(blocks, target, estimate.samples)
            assert abs(found[layer] - exact) < 4 * noise, (target, found[layer], exact, noise)
            # the reported standard error is the estimator's
            assert 0.75 * noise < error[layer] < 1.25 * noise, (target, error[layer], noise)


def test_traces_are_seeded_and_average_over_batches() -> None:
    supernet, images, labels = tiny_supernet()
    first = hutchinson_traces(supernet, images, labels, probes=8, batch_size=4, seed=3)
    again = hutchinson_traces(supernet, images, labels, probes=8, batch_size=4, seed=3)
    other = hutchinson_traces(supernet, images, labels, probes=8, batch_size=4, seed=4)
    np.testing.assert_array_equal(first.weight, again.weight)
    assert not np.array_equal(first.weight, other.weight)
    assert first.samples == 2 * 8
    with pytest.raises(ValueError, match="probes"):
        hutchinson_traces(supernet, images, labels, probes=1)


def test_weight_errors_are_those_of_torch_fake_quantize() -> None:
    supernet, _, _ = tiny_supernet()
    errors = weight_errors(supernet, [TENSOR_SYM])
    space = supernet.space
    for index, layer in enumerate(supernet.elastic_layers().values()):
        for b, bits in enumerate(space.w_bits):
            handle = layer.quantizer.resolve(LayerChoice(bits, 8, TENSOR_SYM))
            step = float(handle.w_log_step.detach().exp())
            expected = torch.fake_quantize_per_tensor_affine(
                layer.weight.detach(), step, 0, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            )
            manual = float(((expected - layer.weight.detach()) ** 2).sum())
            assert errors[0, index, b] == pytest.approx(manual, rel=1e-5)
    assert (np.diff(errors[0], axis=1) < 0).all()  # more bits, less error


def test_activation_errors_average_the_inputs_errors_per_image() -> None:
    supernet, images, _ = tiny_supernet()
    errors = activation_errors(supernet, images, [CHANNEL_ASYM], batch_size=3)
    layer = supernet.model[2]
    with torch.no_grad():
        hidden = supernet.model[1](supernet.model[0](images))
        handle = layer.quantizer.resolve(LayerChoice(8, 4, CHANNEL_ASYM))
        manual = float(((layer.quantizer.quantize_input(hidden, handle) - hidden) ** 2).sum())
    b = supernet.space.a_bits.index(4)
    assert errors[0, 1, b] == pytest.approx(manual / len(images), rel=1e-5)


def test_hessian_sensitivities_combine_traces_and_errors_and_restore_the_supernet() -> None:
    supernet, images, labels = tiny_supernet()
    space = supernet.space
    config = space.uniform(4, 4, TENSOR_SYM)
    supernet.set_subnet(config)
    supernet.train()
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    found = hessian_sensitivities(
        supernet, images, labels, images, forms=[TENSOR_SYM, CHANNEL_ASYM], probes=4, seed=0
    )
    assert supernet.active_subnet() == config and supernet.training
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert found.method == "hessian" and found.forms == (TENSOR_SYM, CHANNEL_ASYM)
    assert found.weight.shape == (2, 3, len(space.w_bits))
    trace = np.asarray(found.info["weight_trace"])
    n_params = np.asarray([layer.n_params for layer in space.layers], dtype=float)
    with torch.no_grad():
        supernet.set_subnet(None)
        errors = weight_errors(supernet, [TENSOR_SYM, CHANNEL_ASYM])
    np.testing.assert_allclose(found.weight, (trace / n_params)[None, :, None] * errors)
