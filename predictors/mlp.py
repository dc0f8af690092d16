"""The MLP backend: a torch multilayer perceptron on standardised accuracies, early-stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_torch_save
from eqsearch.resources import check_memory
from eqsearch.space import ElasticSpace
from predictors.base import BasePredictor, check_fraction, check_positive, check_threads
from predictors.encoding import FeatureArray, feature_count

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MLPOptions:
    """Hyper-parameters of :class:`MLPPredictor`.

    Args:
        hidden_layers: number of hidden layers (depth).
        width: units per hidden layer.
        dropout: dropout probability after each hidden layer.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        epochs: most passes over the training rows.
        batch_size: rows per optimisation step.
        patience: epochs without a better validation loss before stopping early.
        val_fraction: share of the fit rows held out for early stopping (0 disables it).
        threads: torch threads while fitting and predicting (0: leave torch's setting).
    """

    hidden_layers: int = 2
    width: int = 128
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 400
    batch_size: int = 128
    patience: int = 40
    val_fraction: float = 0.15
    threads: int = 1

    def __post_init__(self) -> None:
        check_threads("MLPOptions", self.threads)
        require_positive_integers(
            self, ("hidden_layers", "width", "epochs", "batch_size", "patience"), "MLPOptions."
        )
        check_positive("MLPOptions", lr=self.lr)
        check_fraction(
            "MLPOptions",
            dropout=self.dropout,
            val_fraction=self.val_fraction,
        )
        if (
            isinstance(self.weight_decay, bool)
            or not isinstance(self.weight_decay, (int, float))
            or not 0 <= self.weight_decay < float("inf")
        ):
            raise InputError(f"MLPOptions.weight_decay must be >= 0; got {self.weight_decay!r}")


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads, restoring the setting after (0 leaves it)."""
    import torch

    previous = torch.get_num_threads()
    # small matrices gain nothing from threads, and on a busy CPU spinning threads make each
    # step tens of times slower
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def network_memory_bytes(n_features: int, options: MLPOptions) -> float:
    """A generous estimate of an MLP's fitting memory: its float32 weights four times over
    (the weights, their gradients and AdamW's two moments), plus a batch of activations."""
    width = float(options.width)
    weights = n_features * width + (options.hidden_layers - 1) * width * width + width
    activations = float(options.batch_size) * width * options.hidden_layers * 3
    return 4.0 * (4 * weights + activations)


def _network(n_features: int, options: MLPOptions) -> torch.nn.Sequential:
    from torch import nn

    check_memory(
        network_memory_bytes(n_features, options),
        f"an MLP of {options.hidden_layers} hidden layers of width {options.width}",
    )

    layers: list[nn.Module] = []
    width_in = n_features
    for _ in range(options.hidden_layers):
        layers.append(nn.Linear(width_in, options.width))
        layers.append(nn.ReLU())
        if options.dropout > 0:
            layers.append(nn.Dropout(options.dropout))
        width_in = options.width
    layers.append(nn.Linear(width_in, 1))
    return nn.Sequential(*layers)


class MLPPredictor(BasePredictor):
    """CQAP as a multilayer perceptron (torch), trained with AdamW on standardised accuracy.

    Training rows are shuffled with a seeded ``torch.Generator``; the global torch RNG is
    forked, seeded and restored around fitting so results depend on ``seed`` only.
    """

    name: ClassVar[str] = "mlp"
    extension: ClassVar[str] = "pt"
    options_type: ClassVar[type[Any]] = MLPOptions
    options: MLPOptions

    def __init__(self, space: ElasticSpace, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        self.network: torch.nn.Sequential | None = None
        self.epochs_run = 0

    def _fit(self, features: FeatureArray, targets: npt.NDArray[np.float64]) -> None:
        import torch

        options = self.options
        generator = torch.Generator().manual_seed(self.seed)
        x_all = torch.from_numpy(np.ascontiguousarray(features))
        y_all = torch.from_numpy(targets.astype(np.float32))
        order = torch.randperm(len(x_all), generator=generator)
        n_val = round(options.val_fraction * len(x_all))
        if len(x_all) - n_val < 1:
            n_val = 0
        val_rows, train_rows = order[:n_val], order[n_val:]
        x_train, y_train = x_all[train_rows], y_all[train_rows]
        x_val, y_val = x_all[val_rows], y_all[val_rows]
        with torch.random.fork_rng(devices=[]), _torch_threads(options.threads):
            torch.manual_seed(self.seed)
            network = _network(features.shape[1], options)
            optimizer = torch.optim.AdamW(
                network.parameters(), lr=options.lr, weight_decay=options.weight_decay
            )
            best_loss = float("inf")
            best_state = {k: v.clone() for k, v in network.state_dict().items()}
            stale = 0
            for epoch in range(options.epochs):
                network.train()
                permutation = torch.randperm(len(x_train), generator=generator)
                for rows in torch.split(permutation, options.batch_size):
                    optimizer.zero_grad()
                    loss = torch.nn.functional.mse_loss(
                        network(x_train[rows]).squeeze(1), y_train[rows]
                    )
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                self.epochs_run = epoch + 1
                if n_val == 0:
                    continue
                network.eval()
                with torch.no_grad():
                    val_loss = float(torch.nn.functional.mse_loss(network(x_val).squeeze(1), y_val))
                if val_loss < best_loss - 1e-6:
                    best_loss, stale = val_loss, 0
                    best_state = {k: v.clone() for k, v in network.state_dict().items()}
                else:
                    stale += 1
                    if stale >= options.patience:
                        break
            if n_val:
                network.load_state_dict(best_state)
        network.eval()
        self.network = network

    def _predict(self, features: FeatureArray) -> npt.ArrayLike:
        import torch

        assert self.network is not None  # fitted predictors have a network
        with torch.inference_mode(), _torch_threads(self.options.threads):
            output = self.network(torch.from_numpy(np.ascontiguousarray(features)))
        result: npt.NDArray[np.float64] = output.squeeze(1).numpy().astype(np.float64)
        return result

    def _model_payload(self) -> Any:
        assert self.network is not None
        return {key: value.detach().clone() for key, value in self.network.state_dict().items()}

    def _restore(self, model: Any) -> None:
        network = _network(feature_count(self.space), self.options)
        network.load_state_dict(model)
        network.eval()
        self.network = network

    def _write(self, payload: dict[str, Any], target: Path) -> None:
        atomic_torch_save(payload, target)
