"""One explicit, data-driven initialisation of every quantizer entry of a supernet."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from eqsearch.errors import InputError
from supernet.networks.calibrate import preserved_bn_state
from supernet.networks.elastic import Supernet
from supernet.quantizers.clipping import weighted_sample
from supernet.runtime import one_thread

MAX_SAMPLES_PER_LAYER = 1 << 14


def _batches(images: torch.Tensor | Iterable[Any]) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        yield images
        return
    for batch in images:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def init_quantizers(
    supernet: Supernet,
    images: torch.Tensor | Iterable[Any],
    *,
    max_samples: int = MAX_SAMPLES_PER_LAYER,
    seed: int = 0,
) -> None:
    """Initialise every (bits, form) step size and offset from calibration images.

    Runs the full-precision model once over ``images`` (a tensor, or an iterable of tensors
    or ``(images, labels)`` batches), records each elastic layer's input range and a weighted
    sample of its inputs (the extreme values exact, ``max_samples`` others drawn at random
    from a generator seeded with ``seed``; see
    :func:`~supernet.quantizers.clipping.weighted_sample`), and hands them with the layer's
    weight to its quantizer's clipping search. BN layers normalise with batch statistics, as
    in training (running statistics of a fresh model would give activation ranges training
    never sees); dropout is off. BN running statistics, modes and the active subnet are left
    as they were.
    """
    layers = supernet.elastic_layers()
    generator = torch.Generator().manual_seed(seed)
    samples: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}
    extremes: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook(name: str) -> Any:
        def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            values = inputs[0].detach()
            low, high = torch.aminmax(values)
            extremes[name].append(torch.stack([low, high]).float().cpu())
            sample, weights = weighted_sample(values.reshape(1, -1).float(), max_samples, generator)
            samples[name].append((sample.cpu(), weights.cpu()))

        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    previous = supernet.active_subnet()
    modes = {module: module.training for module in supernet.modules()}
    supernet.set_subnet(None)
    supernet.eval()
    for module in supernet.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()
    device = next(supernet.parameters()).device
    try:
        seen = 0
        with preserved_bn_state(supernet):
            for batch in _batches(images):
                supernet(batch.to(device))
                seen += 1
        if seen == 0:
            raise InputError("init_quantizers needs at least one batch of calibration images")
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    with one_thread():
        _calibrate_layers(layers, samples, extremes, max_samples, generator, seed, device)
    supernet.set_subnet(previous)


def _calibrate_layers(
    layers: dict[str, Any],
    samples: dict[str, list[tuple[torch.Tensor, torch.Tensor]]],
    extremes: dict[str, list[torch.Tensor]],
    max_samples: int,
    generator: torch.Generator,
    seed: int,
    device: torch.device,
) -> None:
    # Thousands of small tensor ops: on one thread (see supernet.runtime.one_thread).
    for index, (name, layer) in enumerate(layers.items()):
        values, weights = weighted_sample(
            torch.cat([sample for sample, _ in samples[name]], dim=1),
            max_samples,
            generator,
            weights=torch.cat([weights for _, weights in samples[name]], dim=1),
        )
        ranges = torch.stack(extremes[name])
        low, high = float(ranges[:, 0].min()), float(ranges[:, 1].max())
        layer.quantizer.calibrate(
            layer.weight,
            values.to(device),
            low,
            high,
            input_weights=weights.to(device),
            seed=seed * 1_000_003 + index,
        )
