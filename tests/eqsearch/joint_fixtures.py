"""An enumerable joint architecture × bits space made in the tests, with an analytic oracle.

Two stages of inverted-residual blocks (depth {1, 2}, per block expand ratio {2, 4} and
depth-wise kernel {3, 5}): 1×1 expand (pinned 8/8), depth-wise conv (pinned 8/8), 1×1 project
(searched: weight bits {2, 4, 8}, activation bits {4, 8}); a pinned stem and head. 400
architectures, 360,000 subnets per form.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from eqsearch.problem import SearchProblem, accuracy_objective, bitops_objective
from eqsearch.space import ConfigBatch, ElasticSpace, LayerSpec, QuantForm, SubnetConfig
from eqsearch.space.genes import ArchGene, Condition
from eqsearch.space.geometry import Dim, LayerGeometry

TENSORRT = QuantForm("channel", True, True)
STAGES = ((8, 16, 2), (16, 24, 2))
"""(input width, output width, stride of the first block) per stage."""
STEM_SIZE = 16
DEPTHS = (1, 2)
EXPANDS = (2, 4)
KERNELS = (3, 5)


def _positions(side: int) -> int:
    return side * side


def joint_space(**kwargs: object) -> ElasticSpace:
    """The two-stage joint space (see the module docstring)."""
    genes: list[ArchGene] = []
    layers = [
        LayerSpec.from_geometry(
            "stem",
            "conv",
            LayerGeometry(
                Dim(3), Dim(8), Dim(3), Dim(_positions(STEM_SIZE)), Dim(_positions(STEM_SIZE))
            ),
            pinned=(8, 8),
        )
    ]
    side = STEM_SIZE
    for stage, (in_width, out_width, stride) in enumerate(STAGES, start=1):
        depth = ArchGene(f"stage{stage}.depth", DEPTHS)
        genes.append(depth)
        for block in range(1, max(DEPTHS) + 1):
            runs = (depth.at_least(block),) if block > min(DEPTHS) else ()
            expand = ArchGene(f"stage{stage}.block{block}.expand", EXPANDS, runs)
            kernel = ArchGene(f"stage{stage}.block{block}.kernel", KERNELS, runs)
            genes += [expand, kernel]
            width_in = in_width if block == 1 else out_width
            middle = Dim.by(expand.name, {e: width_in * e for e in EXPANDS})
            block_stride = stride if block == 1 else 1
            out_side = -(-side // block_stride)
            name = f"stage{stage}.block{block}"
            layers += [
                LayerSpec.from_geometry(
                    f"{name}.expand",
                    "conv",
                    LayerGeometry(
                        Dim(width_in), middle, Dim(1), Dim(_positions(side)), Dim(_positions(side))
                    ),
                    pinned=(8, 8),
                    active_if=runs,
                ),
                LayerSpec.from_geometry(
                    f"{name}.depthwise",
                    "conv",
                    LayerGeometry(
                        middle,
                        middle,
                        Dim.follow(kernel),
                        Dim(_positions(side)),
                        Dim(_positions(out_side)),
                        depthwise=True,
                    ),
                    pinned=(8, 8),
                    active_if=runs,
                ),
                LayerSpec.from_geometry(
                    f"{name}.project",
                    "conv",
                    LayerGeometry(
                        middle,
                        Dim(out_width),
                        Dim(1),
                        Dim(_positions(out_side)),
                        Dim(_positions(out_side)),
                    ),
                    active_if=runs,
                ),
            ]
            side = out_side
    layers.append(
        LayerSpec.from_geometry("head", "linear", LayerGeometry(Dim(24), Dim(10)), pinned=(8, 8))
    )
    settings: dict[str, object] = {"w_bits": (2, 4, 8), "a_bits": (4, 8), "genes": tuple(genes)}
    settings.update(kwargs)
    return ElasticSpace(tuple(layers), **settings)  # type: ignore[arg-type]


def loop_layer_sizes(space: ElasticSpace, config: SubnetConfig) -> list[dict[str, int] | None]:
    """Per layer of ``space``: params, MACs, inputs and channels in ``config``, or None where it
    does not run — computed the plain way from the architecture (not from the geometry)."""
    arch = config.arch_dict
    sizes: list[dict[str, int] | None] = [
        {"params": 8 * 3 * 9, "macs": 8 * 3 * 9 * 256, "inputs": 3 * 256, "channels": 8}
    ]
    side = STEM_SIZE
    for stage, (in_width, out_width, stride) in enumerate(STAGES, start=1):
        depth = arch[f"stage{stage}.depth"]
        for block in range(1, max(DEPTHS) + 1):
            block_stride = stride if block == 1 else 1
            out_side = -(-side // block_stride)
            if block > depth:
                sizes += [None, None, None]
                continue
            width_in = in_width if block == 1 else out_width
            middle = width_in * arch[f"stage{stage}.block{block}.expand"]
            kernel = arch[f"stage{stage}.block{block}.kernel"]
            sizes.append(
                {
                    "params": middle * width_in,
                    "macs": middle * width_in * side * side,
                    "inputs": width_in * side * side,
                    "channels": middle,
                }
            )
            sizes.append(
                {
                    "params": middle * kernel * kernel,
                    "macs": middle * kernel * kernel * out_side * out_side,
                    "inputs": middle * side * side,
                    "channels": middle,
                }
            )
            sizes.append(
                {
                    "params": out_width * middle,
                    "macs": out_width * middle * out_side * out_side,
                    "inputs": middle * out_side * out_side,
                    "channels": out_width,
                }
            )
            side = out_side
    sizes.append({"params": 240, "macs": 240, "inputs": 24, "channels": 10})
    assert len(sizes) == space.n_layers
    return sizes


class JointOracle:
    """Accuracy grows with depth, width and kernel, and falls with each searched layer's
    quantization noise (≈ 4^-bits), more for the later stage."""

    def __init__(self, space: ElasticSpace) -> None:
        self.space = space
        self.calls = 0
        self.rows = 0
        names = [layer.name for layer in space.layers]
        self.sensitivity = np.asarray([2.0 if "stage2" in n else 1.0 for n in names])
        self.searched = np.zeros(len(names))
        self.searched[list(space.elastic_indices)] = 1.0

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        self.calls += 1
        self.rows += len(configs)
        batch = configs if isinstance(configs, ConfigBatch) else self.space.batch(configs)
        capacity = np.log2(batch.params.sum(axis=1))
        kernels = (batch.channels * batch.active)[:, 2::3].sum(axis=1)
        running = batch.active * self.searched
        w_noise = 4.0 ** (2 - np.where(running > 0, batch.w_bits, 32))
        a_noise = 4.0 ** (2 - np.where(running > 0, batch.a_bits, 32))
        noise = (self.sensitivity * (6 * w_noise + 3 * a_noise)).sum(axis=1)
        return 50.0 + 3.0 * capacity + 0.01 * kernels - noise


def joint_problem(constraints: Sequence[object] = ()) -> SearchProblem:
    """Accuracy (max) and BitOPs (min) over the joint space in the TensorRT form."""
    space = joint_space()
    return SearchProblem(
        space,
        [accuracy_objective(JointOracle(space)), bitops_objective()],
        constraints,  # type: ignore[arg-type]
        forms=TENSORRT,
    )


def all_canonical_genomes(problem: SearchProblem) -> np.ndarray:
    """Every distinct canonical genome of the problem's layout (one per subnet)."""
    layout = problem.layout
    ranges = [
        range(int(lo), int(hi) + 1) for lo, hi in zip(layout.lower, layout.upper, strict=True)
    ]
    arch_ranges = ranges[layout.arch_start :]
    archs = np.unique(
        layout.space.activity.evaluate(np.asarray(list(itertools.product(*arch_ranges))))[0],
        axis=0,
    )
    bit_ranges = ranges[: layout.arch_start]
    bits = np.asarray(list(itertools.product(*bit_ranges)), dtype=np.int64)
    rows = []
    for arch in archs:
        genomes = np.concatenate([bits, np.broadcast_to(arch, (len(bits), len(arch)))], axis=1)
        rows.append(np.unique(layout.canonical(genomes), axis=0))
    return np.concatenate(rows)


def condition(gene: str, *values: int) -> Condition:
    """Shorthand for a condition in tests."""
    return Condition(gene, values)
