"""torch.compile: whole quantized models trace as one graph; the compiled quantizer pieces."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import torch._dynamo

from supernet import build_supernet, init_quantizers, runtime
from supernet.runtime import compiled_quantizers, device_path
from supernet.training.config import TrainConfig
from supernet.training.sandwich import draw_sandwich, sandwich_step

FORMS = {
    "lsq": {},
    "n2uq": {"granularities": ("channel",), "w_symmetries": (True,), "a_symmetries": (False,)},
}


def _model(quantizer: str) -> tuple[Any, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, quantizer=quantizer, **FORMS[quantizer]
    )
    images = torch.randn(16, 1, 8, 8)
    labels = torch.randint(0, 3, (16,))
    init_quantizers(supernet, images)
    supernet.train()
    return supernet, images, labels


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", sorted(FORMS))
def test_a_quantized_training_forward_is_one_graph(quantizer: str) -> None:
    supernet, images, labels = _model(quantizer)
    space = supernet.space
    supernet.set_subnet(space.uniform(4, 4, space.forms[-1]))

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(supernet(x), y)

    torch._dynamo.reset()
    # not forced: what torch.compile traces is the device path (no numba, no host reads)
    with device_path(False):
        explained = torch._dynamo.explain(loss)(images, labels)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0)
        torch._dynamo.reset()
        compiled_loss = torch.compile(loss, backend="aot_eager")(images, labels)
        compiled_loss.backward()
        compiled_grads = {
            n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None
        }
        supernet.zero_grad(set_to_none=True)
        eager_loss = loss(images, labels)
        eager_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    eager_grads = {n: p.grad for n, p in supernet.named_parameters() if p.grad is not None}
    assert set(compiled_grads) == set(eager_grads)
    for name, gradient in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_compiled_quantizer_pieces_serve_every_layer_and_bit_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graphs: list[int] = []

    def counting(graph: torch.fx.GraphModule, inputs: Any) -> Any:
        graphs.append(1)
        return graph.forward

    monkeypatch.setattr(runtime, "COMPILE_BACKEND", counting)
    torch._dynamo.reset()
    reference, images, labels = _model("lsq")
    supernet = copy.deepcopy(reference)
    config = TrainConfig(model="tiny_convnet", dataset="digits")
    space = supernet.space
    for seed in range(4):
        subnets = draw_sandwich(space, np.random.default_rng(seed), space.w_bits, forms="per_layer")
        results = []
        for model, compile_on in ((reference, False), (supernet, True)):
            model.zero_grad(set_to_none=True)
            with device_path(), compiled_quantizers(compile_on):
                losses = sandwich_step(model, images, labels, subnets, config)
            results.append(
                (losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
            )
        (eager, eager_grads), (compiled, compiled_grads) = results
        for name, value in eager.items():
            torch.testing.assert_close(compiled[name], value, msg=name)
        for name, gradient in eager_grads.items():
            torch.testing.assert_close(
                compiled_grads[name], gradient, rtol=1e-4, atol=1e-6, msg=name
            )
    # each piece compiled once or twice (dynamic shapes), not once per layer and grid
    assert 0 < len(graphs) <= 8, len(graphs)
