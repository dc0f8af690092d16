"""A fixed probe set of subnets that summarises a supernet in a few accuracies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eqsearch.space import ElasticSpace, QuantForm, SubnetConfig
from supernet.data.bundle import DataBundle
from supernet.evaluation.evaluate import PAPER_FORMS
from supernet.evaluation.oracle import measure_accuracy
from supernet.networks.elastic import Supernet


@dataclass(frozen=True)
class ProbeSet:
    """Named subnets: uniform bits across forms plus a few seeded mixed configs."""

    names: tuple[str, ...]
    configs: tuple[SubnetConfig, ...]

    @classmethod
    def build(
        cls,
        space: ElasticSpace,
        *,
        bits: Sequence[int] | None = None,
        forms: Sequence[QuantForm] | None = None,
        mixed: int = 4,
        seed: int = 0,
    ) -> ProbeSet:
        """Uniform W=A subnets for every bit width (default: all the space shares) in every
        form (default: the paper's four that the space has), plus ``mixed`` random configs."""
        shared = sorted(set(space.w_bits) & set(space.a_bits))
        chosen_bits = list(bits) if bits is not None else shared
        chosen_forms = list(forms) if forms else [f for f in PAPER_FORMS if f in space.forms]
        chosen_forms = chosen_forms or [space.forms[0]]
        names, configs = [], []
        for value in chosen_bits:
            for form in chosen_forms:
                names.append(f"W{value}A{value}:{form}")
                configs.append(space.uniform(value, value, form))
        for index, config in enumerate(space.sample(np.random.default_rng(seed), mixed)):
            names.append(f"mixed{index}")
            configs.append(config)
        return cls(tuple(names), tuple(configs))

    def evaluate(self, supernet: Supernet, data: DataBundle, bn_images: int) -> dict[str, float]:
        """Accuracy of every probe on the held-out slice, each BN-recalibrated."""
        calibration = data.calibration_source(bn_images)
        return {
            name: measure_accuracy(supernet, config, data.holdout, calibration)
            for name, config in zip(self.names, self.configs, strict=True)
        }


def bits_of(name: str) -> int | None:
    """Bit width of a uniform probe name (``"W4A4:..."`` → 4), None for mixed probes."""
    if not name.startswith("W"):
        return None
    return int(name[1 : name.index("A")])
