"""The joint space of the OFA/OQA MobileNetV3 family, declared from its architecture (no torch)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, Granularity, LayerSpec
from eqsearch.space.genes import ArchGene, Condition
from eqsearch.space.geometry import Dim, LayerGeometry

SE_REDUCTION = 4
CHANNEL_DIVISOR = 8


def round_channels(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """MobileNet's channel rounding: the nearest multiple of ``divisor``, at least ``divisor``
    and never more than 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class MobileNetV3Layout:
    """The fixed part of a MobileNetV3 supernet and its elastic choice sets.

    Defaults are OFA's ``ofa_mbv3_d234_e346_k357_w1.0`` (the space OQA searches): a 3×3
    stride-2 stem of 16 channels (h-swish), a first block (depth-wise 3×3, ReLU, project to
    16) without SE, five elastic stages of widths 24, 40, 80, 112, 160 with strides 2, 2, 2,
    1, 2, squeeze-excitation in stages 2, 4 and 5 and h-swish in stages 3 to 5 (ReLU before),
    then a 1×1 expand to 960, global pooling, a 1×1 feature mix to 1280 and the classifier.

    Args:
        stage_widths, stage_strides, stage_se, stage_hswish: per elastic stage (h-swish or
            ReLU as the stage's activation; the activation does not change the space, only
            the network built from the layout).
        depths, expands, kernels: the choice sets of every stage's depth and every block's
            expand ratio and depth-wise kernel.
        resolutions: input sizes (one value: fixed, no gene).
        stem_width, first_block_width, final_width, feature_width: fixed widths.
        num_classes, in_channels: the data.
    """

    stage_widths: tuple[int, ...] = (24, 40, 80, 112, 160)
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2)
    stage_se: tuple[bool, ...] = (False, True, False, True, True)
    stage_hswish: tuple[bool, ...] = (False, False, True, True, True)
    depths: tuple[int, ...] = (2, 3, 4)
    expands: tuple[int, ...] = (3, 4, 6)
    kernels: tuple[int, ...] = (3, 5, 7)
    resolutions: tuple[int, ...] = (224,)
    stem_width: int = 16
    first_block_width: int = 16
    final_width: int = 960
    feature_width: int = 1280
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        stages = len(self.stage_widths)
        per_stage = (self.stage_strides, self.stage_se, self.stage_hswish)
        if not stages or any(len(values) != stages for values in per_stage):
            raise InputError(
                "MobileNetV3Layout.stage_widths, stage_strides, stage_se and stage_hswish need "
                f"one entry per stage; got {len(self.stage_widths)}, {len(self.stage_strides)}, "
                f"{len(self.stage_se)}, {len(self.stage_hswish)}"
            )
        for name in (
            "depths",
            "expands",
            "kernels",
            "resolutions",
            "stage_widths",
            "stem_width",
            "first_block_width",
            "final_width",
            "feature_width",
            "num_classes",
            "in_channels",
        ):
            values = getattr(self, name)
            if isinstance(values, int) and not isinstance(values, bool):
                values = (values,)
            if not values or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
            ):
                raise InputError(f"MobileNetV3Layout.{name} must hold positive integers")
        for name in (*ARCHITECTURE_OPTIONS, "resolutions"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        if any(kernel % 2 == 0 for kernel in self.kernels):
            raise InputError(f"MobileNetV3Layout.kernels must be odd; got {self.kernels}")
        if any(stride not in (1, 2) for stride in self.stage_strides):
            raise InputError(
                f"MobileNetV3Layout.stage_strides must be 1 or 2; got {self.stage_strides}"
            )

    @property
    def architecture_options(self) -> dict[str, tuple[int, ...]]:
        """The elastic choice sets by option name (what ``SpaceSpec.architecture`` sets)."""
        return {name: getattr(self, name) for name in ARCHITECTURE_OPTIONS}

    def with_architecture(self, options: Mapping[str, Sequence[int]]) -> MobileNetV3Layout:
        """The layout with some choice sets replaced (ValueError naming an unknown option)."""
        unknown = sorted(set(options) - set(ARCHITECTURE_OPTIONS))
        if unknown:
            raise InputError(
                f"unknown architecture option(s) {', '.join(unknown)}; a MobileNetV3 supernet "
                f"takes {', '.join(ARCHITECTURE_OPTIONS)}"
            )
        changes: dict[str, Any] = {name: tuple(values) for name, values in options.items()}
        return replace(self, **changes)

    def middle_width(self, in_width: int, expand: int) -> int:
        """The expanded (hidden) width of a block: ``round_channels(in_width·expand)``."""
        return round_channels(in_width * expand)

    def squeezed_width(self, middle: int) -> int:
        """The squeeze-excitation width of a block of hidden width ``middle``."""
        return round_channels(middle // SE_REDUCTION)


ARCHITECTURE_OPTIONS = ("depths", "expands", "kernels")
"""The architecture choice sets a MobileNetV3 supernet takes as model options."""

FAMILY: dict[str, MobileNetV3Layout] = {
    "oqa_mbv3": MobileNetV3Layout(),
    "oqa_mbv3_small": MobileNetV3Layout(
        stage_widths=(24, 40, 80),
        stage_strides=(1, 2, 2),
        stage_se=(False, True, True),
        stage_hswish=(False, True, True),
        depths=(1, 2),
        expands=(3, 6),
        kernels=(3, 5),
        resolutions=(32,),
        final_width=240,
        feature_width=480,
        num_classes=10,
    ),
    "oqa_mbv3_tiny": MobileNetV3Layout(
        stage_widths=(16, 24, 32),
        stage_strides=(2, 2, 1),
        stage_se=(False, True, True),
        stage_hswish=(False, True, True),
        depths=(1, 2),
        expands=(3, 6),
        kernels=(3, 5),
        resolutions=(28,),
        stem_width=8,
        first_block_width=8,
        final_width=96,
        feature_width=192,
        num_classes=10,
        in_channels=1,
    ),
}
"""The registered OFA/OQA MobileNetV3 family: ImageNet size, 32×32 and 28×28 (the data's
classes, channels and resolution replace the defaults when a model is built)."""


def _side(resolution: int, stride: int) -> int:
    # a k×k conv with padding k // 2 and stride s maps n positions per side to ceil(n / s)
    return math.ceil(resolution / stride)


def mobilenet_v3_space(
    layout: MobileNetV3Layout | None = None,
    *,
    w_bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    a_bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    granularities: Sequence[Granularity | str] = ("channel", "tensor"),
    w_symmetries: Sequence[bool] = (True, False),
    a_symmetries: Sequence[bool] = (True, False),
    first_last: tuple[int, int] | None = (8, 8),
    se_pinned: tuple[int, int] | None = None,
) -> ElasticSpace:
    """The joint architecture × quantization space of a MobileNetV3 supernet.

    Genes, per stage ``k``: ``stageK.depth`` (the first d blocks run), and per block ``j``
    ``stageK.blockJ.expand`` and ``stageK.blockJ.kernel`` (active when the block runs); a
    ``resolution`` gene first where ``layout.resolutions`` has several values. Layers per
    block: ``.expand`` (1×1, out-channels ``round_channels(in·expand)``), ``.depthwise``
    (k×k on those channels, the block's stride), ``.se.reduce`` / ``.se.expand`` in SE
    stages (1×1 on the pooled vector, ``round_channels(mid / 4)`` channels), ``.project``
    (1×1 back to the stage width). Every layer's positions follow the resolution.

    Args:
        layout: architecture and choice sets (OFA's MobileNetV3 space by default).
        w_bits, a_bits, granularities, w_symmetries, a_symmetries: the quantization space.
        first_last: bits the stem and the classifier are pinned to (None: searched).
        se_pinned: bits the SE convs are pinned to (``(32, 32)``: full precision, as OQA
            leaves them; None: searched).
    """
    shape = layout or MobileNetV3Layout()
    genes: list[ArchGene] = []
    if len(shape.resolutions) > 1:
        resolution_gene = ArchGene("resolution", shape.resolutions)
        genes.append(resolution_gene)

    def positions(stride: int) -> Dim:
        sides = {r: _side(r, stride) ** 2 for r in shape.resolutions}
        if len(shape.resolutions) == 1:
            return Dim(next(iter(sides.values())))
        return Dim.by("resolution", sides)

    layers = [
        LayerSpec.from_geometry(
            "first_conv",
            "conv",
            LayerGeometry(
                Dim(shape.in_channels), Dim(shape.stem_width), Dim(3), positions(1), positions(2)
            ),
            pinned=first_last,
        ),
        LayerSpec.from_geometry(
            "first_block.depthwise",
            "conv",
            LayerGeometry(
                Dim(shape.stem_width),
                Dim(shape.stem_width),
                Dim(3),
                positions(2),
                positions(2),
                depthwise=True,
            ),
        ),
        LayerSpec.from_geometry(
            "first_block.project",
            "conv",
            LayerGeometry(
                Dim(shape.stem_width),
                Dim(shape.first_block_width),
                Dim(1),
                positions(2),
                positions(2),
            ),
        ),
    ]
    width = shape.first_block_width
    stride = 2
    for stage, (out_width, stage_stride, se) in enumerate(
        zip(shape.stage_widths, shape.stage_strides, shape.stage_se, strict=True), start=1
    ):
        depth = ArchGene(f"stage{stage}.depth", shape.depths)
        genes.append(depth)
        for block in range(1, max(shape.depths) + 1):
            runs: tuple[Condition, ...] = (
                (depth.at_least(block),) if block > min(shape.depths) else ()
            )
            prefix = f"stage{stage}.block{block}"
            expand = ArchGene(f"{prefix}.expand", shape.expands, runs)
            kernel = ArchGene(f"{prefix}.kernel", shape.kernels, runs)
            genes += [expand, kernel]
            in_width = width if block == 1 else out_width
            in_stride = stride
            out_stride = stride * (stage_stride if block == 1 else 1)
            stride = out_stride
            middle_sizes = {e: shape.middle_width(in_width, e) for e in shape.expands}
            middle = Dim.by(expand.name, middle_sizes)
            layers += [
                LayerSpec.from_geometry(
                    f"{prefix}.expand",
                    "conv",
                    LayerGeometry(
                        Dim(in_width), middle, Dim(1), positions(in_stride), positions(in_stride)
                    ),
                    active_if=runs,
                ),
                LayerSpec.from_geometry(
                    f"{prefix}.depthwise",
                    "conv",
                    LayerGeometry(
                        middle,
                        middle,
                        Dim.follow(kernel),
                        positions(in_stride),
                        positions(out_stride),
                        depthwise=True,
                    ),
                    active_if=runs,
                ),
            ]
            if se:
                squeezed = Dim.by(
                    expand.name,
                    {e: shape.squeezed_width(m) for e, m in middle_sizes.items()},
                )
                layers += [
                    LayerSpec.from_geometry(
                        f"{prefix}.se.reduce",
                        "conv",
                        LayerGeometry(middle, squeezed),
                        pinned=se_pinned,
                        active_if=runs,
                    ),
                    LayerSpec.from_geometry(
                        f"{prefix}.se.expand",
                        "conv",
                        LayerGeometry(squeezed, middle),
                        pinned=se_pinned,
                        active_if=runs,
                    ),
                ]
            layers.append(
                LayerSpec.from_geometry(
                    f"{prefix}.project",
                    "conv",
                    LayerGeometry(
                        middle, Dim(out_width), Dim(1), positions(out_stride), positions(out_stride)
                    ),
                    active_if=runs,
                )
            )
        width = out_width
    layers += [
        LayerSpec.from_geometry(
            "final_expand",
            "conv",
            LayerGeometry(
                Dim(width), Dim(shape.final_width), Dim(1), positions(stride), positions(stride)
            ),
        ),
        LayerSpec.from_geometry(
            "feature_mix", "conv", LayerGeometry(Dim(shape.final_width), Dim(shape.feature_width))
        ),
        LayerSpec.from_geometry(
            "classifier",
            "linear",
            LayerGeometry(Dim(shape.feature_width), Dim(shape.num_classes)),
            pinned=first_last,
        ),
    ]
    return ElasticSpace(
        tuple(layers),
        w_bits=tuple(w_bits),
        a_bits=tuple(a_bits),
        granularities=tuple(Granularity(g) for g in granularities),
        w_symmetries=tuple(w_symmetries),
        a_symmetries=tuple(a_symmetries),
        genes=tuple(genes),
    )
