"""The declared OFA/OQA MobileNetV3 joint space against a plain count of its layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.space.mobilenet import MobileNetV3Layout, mobilenet_v3_space, round_channels


def plain_macs_and_params(arch: dict[str, int], resolution: int) -> tuple[int, int]:
    """MACs and weights of OFA's MobileNetV3 for one architecture, counted block by block."""
    widths, strides, se = (24, 40, 80, 112, 160), (2, 2, 2, 1, 2), (0, 1, 0, 1, 1)
    side = math.ceil(resolution / 2)
    macs = 16 * 3 * 9 * side * side  # stem, 3×3 stride 2
    params = 16 * 3 * 9
    macs += 16 * 9 * side * side + 16 * 16 * side * side  # first block: depth-wise + project
    params += 16 * 9 + 16 * 16
    width = 16
    for stage in range(5):
        for block in range(arch[f"stage{stage + 1}.depth"]):
            prefix = f"stage{stage + 1}.block{block + 1}"
            middle = round_channels(width * arch[f"{prefix}.expand"])
            kernel = arch[f"{prefix}.kernel"]
            out_side = math.ceil(side / strides[stage]) if block == 0 else side
            macs += width * middle * side * side + middle * kernel**2 * out_side**2
            params += width * middle + middle * kernel**2
            if se[stage]:
                squeezed = round_channels(middle // 4)
                macs += 2 * middle * squeezed
                params += 2 * middle * squeezed
            macs += middle * widths[stage] * out_side**2
            params += middle * widths[stage]
            width, side = widths[stage], out_side
    macs += 160 * 960 * side * side + 960 * 1280 + 1280 * 1000
    params += 160 * 960 + 960 * 1280 + 1280 * 1000
    return macs, params


def test_ofa_space_shape_and_genes() -> None:
    space = mobilenet_v3_space()
    assert space.n_layers == 90 and len(space.elastic_indices) == 88
    assert len(space.genes) == 45  # 5 depths + 20 blocks × (expand, kernel)
    assert space.genome_layout().n_genes == 2 * 88 + 1 + 45
    smallest = space.smallest()
    assert len(smallest.choices) == 90 - 5 * 2 * 3 - 3 * 2 * 2  # two blocks of each stage skipped
    assert round_channels(24 * 3) == 72 and round_channels(80 * 6 // 4) == 120


@pytest.mark.parametrize("resolutions", [(224,), (128, 160, 192, 224)])
def test_costs_equal_a_plain_count_on_random_architectures(resolutions) -> None:
    space = mobilenet_v3_space(MobileNetV3Layout(resolutions=resolutions))
    batch = space.sample(np.random.default_rng(0), 40)
    macs = costs.macs(space, batch)
    params = costs.parameter_count(space, batch)
    for row, config in enumerate(batch.configs()):
        arch = config.arch_dict
        expected = plain_macs_and_params(arch, arch.get("resolution", 224))
        assert (macs[row], params[row]) == expected
