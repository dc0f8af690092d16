"""Shared fixtures: small spaces and supernets."""

from __future__ import annotations

import os

import pytest
import torch

from eqsearch.space import ElasticSpace, LayerSpec

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the two cores: one thread each (and in the commands the
    # tests start), since two threads per worker only wait for each other at every op
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)


def make_space(**kwargs: object) -> ElasticSpace:
    """A 4-layer space: pinned 8/8 conv, two elastic layers, pinned 8/8 linear."""
    layers = (
        LayerSpec(
            "conv1", "conv", n_params=150, macs=117_600, n_inputs=784, out_channels=6, pinned=(8, 8)
        ),
        LayerSpec("conv2", "conv", n_params=2400, macs=240_000, n_inputs=1176, out_channels=16),
        LayerSpec("fc1", "linear", n_params=48_000, macs=48_000, n_inputs=400, out_channels=120),
        LayerSpec(
            "fc2", "linear", n_params=840, macs=840, n_inputs=84, out_channels=10, pinned=(8, 8)
        ),
    )
    return ElasticSpace(layers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def space() -> ElasticSpace:
    return make_space()
