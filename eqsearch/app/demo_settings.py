"""The demo's settings: its models, the sizes of every stage, the quick and joint presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from eqsearch.errors import InputError, require_positive_integers

DEMO_MODELS = {"lenet5": "mnist5k", "oqa_mbv3_tiny": "digits"}
"""The demo's models and the embedded data each trains on: LeNet-5 (bits and forms on a fixed
architecture) and the OQA MobileNetV3 family's tiny member (the joint architecture × bits
space)."""
JOINT_DEMO_BITOPS = 1.5e6
"""The joint demo's BitOPs budget: about a seventh of the largest architecture's at W8A8
(1.02e7 on the digits' 8×8 images)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of every demo stage (the defaults take about 5 minutes on a 2-core CPU).

    Args:
        seed: seeds training, sampling, predictor fitting and the searches.
        model: a key of :data:`DEMO_MODELS` (its dataset comes with it).
        fp_epochs, epochs: full-precision pretraining and supernet epochs.
        samples: subnets measured on the supernet for the predictors (80 % fit, 20 % held out).
        sample_holdout: training images each sampled (and verified) subnet is scored on; more
            images than the training run holds out give the accuracies a finer grain
            (100/4000 = 0.025 points), which the predictors' ranking needs at MNIST's
            ~1-point spread. None: the training run's holdout.
        population, generations: NSGA-II settings of both engines.
        w_bits: the average weight-bit budget of the search.
        bitops: a BitOPs budget of the search instead (None: the ``w_bits`` budget).
        verify: front configs measured on the supernet per engine.
        backends: predictor backends to fit; the one with the best held-out Kendall τ drives
            the searches.
    """

    seed: int = 0
    model: str = "lenet5"
    fp_epochs: int = 10
    epochs: int = 25
    samples: int = 1000
    sample_holdout: int | None = 4000
    population: int = 100
    generations: int = 500
    w_bits: float = 3.0
    bitops: float | None = None
    verify: int = 12
    backends: tuple[str, ...] = ("mlp", "xgboost")
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in DEMO_MODELS:
            raise InputError(
                f"DemoSettings.model must be one of {', '.join(DEMO_MODELS)}; got {self.model!r}"
            )
        if self.bitops is not None and not self.bitops > 0:
            raise InputError(f"DemoSettings.bitops must be positive or None; got {self.bitops!r}")
        require_positive_integers(
            self,
            ("fp_epochs", "epochs", "samples", "population", "generations", "verify"),
            "DemoSettings.",
        )
        if self.samples < 10:
            raise InputError(f"DemoSettings.samples must be >= 10; got {self.samples}")

    @classmethod
    def quick(cls, seed: int = 0) -> DemoSettings:
        """Tiny settings that run in well under a minute (tests, smoke checks)."""
        return cls(
            seed=seed,
            samples=30,
            sample_holdout=None,
            train_overrides={"holdout": 300, "bn_images": 200, "quant_init_images": 64},
        ).toy_sizes()

    def toy_sizes(self) -> DemoSettings:
        """These settings with the quick demos' epochs and search sizes (a check, not a
        result)."""
        return replace(self, fp_epochs=1, epochs=1, population=12, generations=4, verify=3)

    @classmethod
    def joint(cls, seed: int = 0, *, quick: bool = False) -> DemoSettings:
        """The joint demo: ``oqa_mbv3_tiny`` on the embedded 8×8 digits, searched for
        architecture, per-layer bits and forms under a BitOPs budget (``quick``: tiny sizes
        for tests)."""
        overrides = {"batch_size": 32, "lr": 3e-3, "holdout": 400, "bn_images": 200}
        full = cls(
            seed=seed,
            model="oqa_mbv3_tiny",
            fp_epochs=10,
            epochs=12,
            samples=500,
            sample_holdout=None,
            population=60,
            generations=200,
            bitops=JOINT_DEMO_BITOPS,
            verify=12,
            train_overrides={**overrides, "quant_init_images": 64},
        )
        if not quick:
            return full
        return replace(
            full,
            samples=20,
            backends=("xgboost",),
            train_overrides={**overrides, "holdout": 1400, "quant_init_images": 32},
        ).toy_sizes()
