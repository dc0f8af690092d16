"""HAWQ sensitivities of a supernet: Hutchinson Hessian traces times quantization errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from eqsearch.errors import InputError
from eqsearch.space import LayerChoice, QuantForm
from eqsearch.strategies.sensitivity import (
    CachedSensitivities,
    Sensitivities,
    cached_sensitivities,
    measured_sensitivities,
    require_fixed_architecture,
)
from supernet.data.images import images_or_batches
from supernet.evaluation.evaluate import EvaluationSet
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet
from supernet.networks.layers import ElasticQuantLayer

DEFAULT_IMAGES = 256
DEFAULT_PROBES = 16
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimates of Hessian traces of the mean cross-entropy, per elastic layer.

    Attributes:
        weight: ``Tr(∂²L/∂W_l²)`` of each elastic layer's (latent) weight.
        weight_error: standard error of each (over every probe of every batch).
        activation: ``Tr(∂²L/∂x_l²)`` of each layer's input activations, summed over a batch's
            elements (for the batch-mean loss: the mean per-image trace).
        activation_error: its standard error.
        samples: probe vectors per layer (batches × probes per batch).
    """

    weight: np.ndarray
    weight_error: np.ndarray
    activation: np.ndarray
    activation_error: np.ndarray
    samples: int


def _rademacher(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random ±1 tensor shaped like ``like`` (drawn on the CPU, so seeds are portable)."""
    signs = torch.randint(0, 2, like.shape, generator=generator, dtype=torch.int8)
    return (signs.to(like.dtype) * 2 - 1).to(like.device)


def _elastic_layers(supernet: Supernet) -> list[ElasticQuantLayer]:
    layers = list(supernet.elastic_layers().values())
    return [layers[index] for index in supernet.space.elastic_indices]


def hutchinson_traces(
    supernet: Supernet,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    probes: int = DEFAULT_PROBES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
) -> TraceEstimate:
    """Estimate the Hessian traces of every elastic layer's weight and input (Hutchinson).

    For each batch, one gradient with its graph, then ``probes`` Hessian-vector products with
    Rademacher vectors ``v`` (independent per layer and per tensor): ``vᵀHv`` estimates the
    trace of each diagonal block without bias, and one product serves every layer. The model
    runs as it is (set its subnet, BN statistics and mode first); the inputs' Hessian comes
    from a zero tensor added to each elastic layer's input.

    Args:
        supernet: the model (usually at full precision, in eval mode).
        images, labels: the data of the loss.
        probes: Rademacher vectors per batch.
        batch_size: images per batch.
        seed: seeds the vectors.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 2:
        raise InputError(f"probes must be an integer >= 2; got {probes!r}")
    if len(images) != len(labels) or len(images) == 0:
        raise InputError("hutchinson_traces needs as many labels as images, and at least one")
    layers = _elastic_layers(supernet)
    device = next(supernet.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    inputs: dict[int, torch.Tensor] = {}

    def add_probe(index: int) -> Callable[[Any, tuple[torch.Tensor, ...]], Any]:
        def hook(module: Any, arguments: tuple[torch.Tensor, ...]) -> Any:
            zero = torch.zeros_like(arguments[0], requires_grad=True)
            inputs[index] = zero
            return (arguments[0] + zero, *arguments[1:])

        return hook

    handles = [layer.register_forward_pre_hook(add_probe(i)) for i, layer in enumerate(layers)]
    weight_samples: list[list[float]] = [[] for _ in layers]
    activation_samples: list[list[float]] = [[] for _ in layers]
    try:
        for image_batch, label_batch in zip(
            images.split(batch_size), labels.split(batch_size), strict=True
        ):
            inputs.clear()
            logits = supernet(image_batch.to(device))
            loss = F.cross_entropy(logits, label_batch.to(device))
            targets = [layer.weight for layer in layers] + [inputs[i] for i in range(len(layers))]
            gradients = torch.autograd.grad(loss, targets, create_graph=True)
            for _ in range(probes):
                vectors = [_rademacher(target, generator) for target in targets]
                products = torch.autograd.grad(
                    gradients, targets, grad_outputs=vectors, retain_graph=True
                )
                for index in range(len(layers)):
                    for samples, position in (
                        (weight_samples, index),
                        (activation_samples, len(layers) + index),
                    ):
                        product = (vectors[position] * products[position]).sum()
                        samples[index].append(float(product))
    finally:
        for handle in handles:
            handle.remove()
    weight = np.asarray(weight_samples)
    activation = np.asarray(activation_samples)
    count = weight.shape[1]
    return TraceEstimate(
        weight=weight.mean(axis=1),
        weight_error=weight.std(axis=1, ddof=1) / np.sqrt(count),
        activation=activation.mean(axis=1),
        activation_error=activation.std(axis=1, ddof=1) / np.sqrt(count),
        samples=count,
    )


@torch.no_grad()
def weight_errors(supernet: Supernet, forms: Sequence[QuantForm]) -> np.ndarray:
    """``‖Q_b(W) − W‖²`` of every elastic layer's weight, per form and weight bit width.

    Returns:
        ``(len(forms), n_elastic, len(space.w_bits))``, with the supernet's learned steps.
    """
    space = supernet.space
    layers = _elastic_layers(supernet)
    result = np.zeros((len(forms), len(layers), len(space.w_bits)))
    for f, form in enumerate(forms):
        for index, layer in enumerate(layers):
            for b, bits in enumerate(space.w_bits):
                handle = layer.quantizer.resolve(LayerChoice(bits, space.a_bits[-1], form))
                error = layer.quantizer.quantize_weight(layer.weight, handle) - layer.weight
                result[f, index, b] = float((error.double() ** 2).sum())
    return result


@torch.no_grad()
def activation_errors(
    supernet: Supernet,
    images: torch.Tensor,
    forms: Sequence[QuantForm],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Mean per-image ``‖Q_b(x) − x‖²`` of every elastic layer's input, per form and
    activation bit width, with the inputs the model (as it is set) computes from ``images``.

    Returns:
        ``(len(forms), n_elastic, len(space.a_bits))``.
    """
    space = supernet.space
    layers = _elastic_layers(supernet)
    totals = np.zeros((len(forms), len(layers), len(space.a_bits)))
    device = next(supernet.parameters()).device

    def measure(index: int) -> Callable[[Any, tuple[torch.Tensor, ...]], None]:
        layer = layers[index]

        def hook(module: Any, arguments: tuple[torch.Tensor, ...]) -> None:
            x = arguments[0]
            for f, form in enumerate(forms):
                for b, bits in enumerate(space.a_bits):
                    handle = layer.quantizer.resolve(LayerChoice(space.w_bits[-1], bits, form))
                    error = layer.quantizer.quantize_input(x, handle) - x
                    totals[f, index, b] += float((error.double() ** 2).sum())

        return hook

    handles = [layer.register_forward_pre_hook(measure(i)) for i, layer in enumerate(layers)]
    try:
        for batch in images.split(batch_size):
            supernet(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()
    result: np.ndarray = totals / len(images)
    return result


def hessian_sensitivities(
    supernet: Supernet,
    images: torch.Tensor,
    labels: torch.Tensor,
    calibration_images: torch.Tensor | Iterable[torch.Tensor],
    *,
    forms: Sequence[QuantForm] | None = None,
    probes: int = DEFAULT_PROBES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
) -> Sensitivities:
    """HAWQ's sensitivities of every elastic layer at every bit width, per form.

    ``Ω_w[l, b] = Tr(H_W,l)/n_params,l · ‖Q_b(W_l) − W_l‖²`` (HAWQ-V2/V3's weight term) and,
    HAWQ-V2's activation term, ``Ω_a[l, b] = Tr(H_x,l)/n_inputs,l · E‖Q_b(x_l) − x_l‖²``
    (per image): both estimate twice the loss increase of quantizing one layer under the
    isotropic approximation. The Hessians are of the full-precision supernet, BN statistics
    re-calibrated for it on ``calibration_images`` (restored afterwards), in eval mode.

    Args:
        supernet: a trained supernet of a fixed architecture.
        images, labels: a few hundred training images for the traces and activation errors.
        calibration_images: BN re-calibration images (a tensor, in batches of 256, or an
            iterable of batches).
        forms: the forms to tabulate (every form of the space by default).
        probes, batch_size, seed: of :func:`hutchinson_traces`.
    """
    space = supernet.space
    require_fixed_architecture(space, "hessian sensitivity")
    chosen = tuple(forms) if forms is not None else space.forms
    for form in chosen:
        space.check_form(form)
    started = time.perf_counter()
    was_training = supernet.training
    try:
        with preserved_bn_state(supernet), supernet.using(None):
            calibrate_bn(supernet, calibration_images)
            supernet.eval()
            traces = hutchinson_traces(
                supernet, images, labels, probes=probes, batch_size=batch_size, seed=seed
            )
            inputs = activation_errors(supernet, images, chosen, batch_size=batch_size)
        weights = weight_errors(supernet, chosen)
    finally:
        supernet.train(was_training)
    elastic = space.elastic_indices
    n_params = np.asarray([space.layers[i].n_params for i in elastic], dtype=np.float64)
    n_inputs = np.asarray([space.layers[i].n_inputs for i in elastic], dtype=np.float64)
    weight_table = (traces.weight / n_params)[None, :, None] * weights
    activation_table = (traces.activation / n_inputs)[None, :, None] * inputs
    info = {
        "images": len(images),
        "probes_per_batch": probes,
        "batch_size": batch_size,
        "seed": seed,
        "trace_samples": traces.samples,
        "weight_trace": traces.weight.tolist(),
        "weight_trace_error": traces.weight_error.tolist(),
        "activation_trace": traces.activation.tolist(),
        "activation_trace_error": traces.activation_error.tolist(),
        "seconds": time.perf_counter() - started,
        "measurements": 0,
        "unit": "loss",
    }
    return Sensitivities(space.fingerprint, "hessian", chosen, weight_table, activation_table, info)


def checkpoint_sensitivities(
    checkpoint: str | Path,
    method: str,
    *,
    supernet: Supernet,
    evaluation: EvaluationSet,
    forms: Sequence[QuantForm] | None = None,
    images: int = DEFAULT_IMAGES,
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CachedSensitivities:
    """Sensitivities of a checkpoint's supernet, cached beside the checkpoint (a rerun with
    the same settings reads them back).

    Args:
        checkpoint: the ``supernet.pt`` the supernet was loaded from (its content keys the
            cache).
        method: ``"hessian"`` (:func:`hessian_sensitivities` on the first ``images``
            scoring images) or ``"measured"`` (``measured_sensitivities``: the supernet's
            accuracy on the scoring images with one layer lowered).
        supernet, evaluation: the loaded supernet and its scoring set (see
            ``supernet.evaluation.evaluate.load_for_evaluation``).
        forms: the forms to cover (every form of the space by default).
        images, probes, seed: of the Hessian traces.
        progress: for ``measured``, called with (configs measured, configs in all).
    """
    from supernet.evaluation.evaluate import supernet_oracle

    space = supernet.space
    chosen = tuple(forms) if forms is not None else space.forms
    scoring = {
        "split": evaluation.split,
        "scoring_images": len(evaluation.scoring),
        "bn_images": len(evaluation.calibration),
        "forms": [str(form) for form in chosen],
    }
    if method == "hessian":
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise InputError(f"images must be a positive integer; got {images!r}")
        settings = {**scoring, "images": min(images, len(evaluation.scoring))}
        settings.update(probes=probes, batch_size=DEFAULT_BATCH_SIZE, seed=seed)

        def compute() -> Sensitivities:
            first_images, first_labels = evaluation.scoring.head(images).tensors()
            return hessian_sensitivities(
                supernet,
                first_images,
                first_labels,
                images_or_batches(evaluation.calibration),
                forms=chosen,
                probes=probes,
                seed=seed,
            )

    elif method == "measured":
        settings = scoring
        total = len(chosen) * (
            1 + len(space.elastic_indices) * (len(space.w_bits) + len(space.a_bits) - 2)
        )

        def compute() -> Sensitivities:
            started = time.perf_counter()
            done = 0

            def advance(count: int) -> None:
                if progress is not None:
                    progress(done + count, total)

            oracle = supernet_oracle(supernet, evaluation, progress=advance)

            def next_form(forms_done: int, _: int) -> None:
                nonlocal done
                done = forms_done * total // len(chosen)

            result = measured_sensitivities(oracle, space, chosen, progress=next_form)
            seconds = time.perf_counter() - started
            return replace(result, info={**result.info, "seconds": seconds})

    else:
        raise InputError(f"method must be hessian or measured; got {method!r}")
    return cached_sensitivities(checkpoint, method, settings, compute, space)
