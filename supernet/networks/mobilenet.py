"""The OFA/OQA MobileNetV3 supernet: stages elastic in depth, blocks in expand ratio and kernel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError
from eqsearch.space import ElasticSpace, Granularity
from eqsearch.space.mobilenet import MobileNetV3Layout, mobilenet_v3_space
from supernet.networks.dynamic import DynamicBatchNorm2d, DynamicConv2d

ArchValues = Mapping[str, int]


def _conv(
    dynamic: bool,
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    *,
    depthwise: bool = False,
    bias: bool = False,
) -> nn.Conv2d:
    if dynamic:
        return DynamicConv2d(
            in_channels, out_channels, kernel, stride, depthwise=depthwise, bias=bias
        )
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel,
        stride,
        padding=kernel // 2,
        groups=in_channels if depthwise else 1,
        bias=bias,
    )


def _norm(dynamic: bool, channels: int) -> nn.BatchNorm2d:
    return DynamicBatchNorm2d(channels) if dynamic else nn.BatchNorm2d(channels)


def _activation(hswish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hswish else nn.ReLU(inplace=True)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: global pooling, 1×1 reduce (ReLU), 1×1 expand (h-sigmoid), gate."""

    def __init__(self, channels: int, squeezed: int, *, dynamic: bool) -> None:
        super().__init__()
        self.reduce = _conv(dynamic, channels, squeezed, 1, bias=True)
        self.expand = _conv(dynamic, squeezed, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(gate))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1×1 expand, k×k depth-wise, optional SE, 1×1 project (+ shortcut).

    In a supernet (``dynamic``) the expand ratio picks the hidden width among
    ``middle_widths`` (the first channels of the widest) and the kernel the centre of the
    largest; a static block has one of each. The block without an expand layer (OFA's first
    block, ratio 1) has ``middle_widths`` ``{1: in_width}``.
    """

    def __init__(
        self,
        in_width: int,
        out_width: int,
        middle_widths: Mapping[int, int],
        kernels: Sequence[int],
        stride: int,
        *,
        se_widths: Mapping[int, int] | None,
        hswish: bool,
        expand: bool = True,
        dynamic: bool = True,
    ) -> None:
        super().__init__()
        self.in_width, self.out_width = in_width, out_width
        self.middle_widths = dict(middle_widths)
        self.se_widths = dict(se_widths) if se_widths is not None else None
        widest = max(self.middle_widths.values())
        kernel = max(kernels)
        self.max_kernel = kernel
        self.residual = stride == 1 and in_width == out_width
        self.has_expand = expand
        self.expand: nn.Conv2d | None = None
        if expand:
            self.expand = _conv(dynamic, in_width, widest, 1)
            self.expand_bn = _norm(dynamic, widest)
            self.expand_act = _activation(hswish)
        self.depthwise = _conv(dynamic, widest, widest, kernel, stride, depthwise=True)
        self.depthwise_bn = _norm(dynamic, widest)
        self.depthwise_act = _activation(hswish)
        self.se: SqueezeExcite | None = None
        if self.se_widths is not None:
            self.se = SqueezeExcite(widest, max(self.se_widths.values()), dynamic=dynamic)
        self.project = _conv(dynamic, widest, out_width, 1)
        self.project_bn = nn.BatchNorm2d(out_width)

    def set_choice(self, expand: int, kernel: int) -> None:
        """Run at expand ratio ``expand`` (its hidden width) with the central ``kernel``.

        Raises:
            KeyError: an expand ratio the block does not have.
            ValueError: a kernel larger than the block's or even.
        """
        if kernel % 2 == 0 or kernel > self.max_kernel:
            raise InputError(f"kernel must be odd and <= {self.max_kernel}; got {kernel}")
        middle = self.middle_widths[expand]
        # set_subnet's hot path: plain dict reads of the submodules (nn.Module.__getattr__
        # costs a microsecond each) and shapes the block's own tables make valid
        modules = self._modules
        if self.has_expand:
            modules["expand"].set_checked_shape(self.in_width, middle, 1)  # type: ignore[union-attr,operator]
        modules["depthwise"].set_checked_shape(middle, middle, kernel)  # type: ignore[union-attr,operator]
        if self.se_widths is not None:
            squeezed = self.se_widths[expand]
            se = modules["se"]._modules  # type: ignore[union-attr]
            se["reduce"].set_checked_shape(middle, squeezed, 1)  # type: ignore[union-attr,operator]
            se["expand"].set_checked_shape(squeezed, middle, 1)  # type: ignore[union-attr,operator]
        modules["project"].set_checked_shape(middle, self.out_width, 1)  # type: ignore[union-attr,operator]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand is not None:
            out = self.expand_act(self.expand_bn(self.expand(out)))
        out = self.depthwise_act(self.depthwise_bn(self.depthwise(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.project_bn(self.project(out))
        return out + x if self.residual else out

    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Sort the hidden channels by importance (L1 norm of the project weights reading
        them), and the SE channels by the L1 norm of the SE expand weights reading them, so
        that every width keeps the most important ones; the widest block computes the same."""
        order = self.project.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        if self.expand is not None:
            _permute_outputs(self.expand, order)
            _permute_norm(self.expand_bn, order)
        _permute_outputs(self.depthwise, order)
        _permute_norm(self.depthwise_bn, order)
        self.project.weight.copy_(self.project.weight[:, order])
        if self.se is not None:
            self.se.reduce.weight.copy_(self.se.reduce.weight[:, order])
            _permute_outputs(self.se.expand, order)
            squeezed = self.se.expand.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
            _permute_outputs(self.se.reduce, squeezed)
            self.se.expand.weight.copy_(self.se.expand.weight[:, squeezed])


def _permute_outputs(conv: nn.Conv2d, order: torch.Tensor) -> None:
    conv.weight.copy_(conv.weight[order])
    if conv.bias is not None:
        conv.bias.copy_(conv.bias[order])


def _permute_norm(norm: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
        if tensor is not None:
            tensor.copy_(tensor[order])


class Stage(nn.Module):
    """Blocks ``block1``, ``block2``, …; the first ``active_depth`` of them run."""

    def __init__(self, blocks: Sequence[InvertedResidual]) -> None:
        super().__init__()
        for index, block in enumerate(blocks, start=1):
            self.add_module(f"block{index}", block)
        self.active_depth = len(blocks)

    def blocks(self) -> list[InvertedResidual]:
        """Every block, in order."""
        return list(self._modules.values())  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.children()):
            if index >= self.active_depth:
                break
            x = block(x)
        return x


class MobileNetV3Supernet(nn.Module):
    """OFA's MobileNetV3 (the space OQA searches), elastic in depth, expand ratio and kernel.

    A 3×3 stride-2 stem (h-swish) and a first block (depth-wise 3×3, ReLU, project) are
    fixed; every stage ``k`` of the layout has ``max(depths)`` blocks of which
    ``stageK.depth`` run, each block with expand ratio ``stageK.blockJ.expand`` and depth-wise
    kernel ``stageK.blockJ.kernel``; then a 1×1 expand (h-swish), global pooling, a 1×1
    feature mix (h-swish) and the classifier. Module paths are the layer names of
    :func:`eqsearch.space.mobilenet.mobilenet_v3_space` for the same layout.

    Args:
        layout: the architecture and its choice sets (classes, channels and resolution too).
        arch: None for the supernet; an architecture (every active gene's value) for a static
            network of plain ``nn.Conv2d``/``nn.BatchNorm2d`` layers of exactly that shape.
    """

    memory_format = torch.channels_last
    """The layout of its 4-d weights (and activations): see :meth:`forward`."""

    def __init__(self, layout: MobileNetV3Layout, arch: ArchValues | None = None) -> None:
        super().__init__()
        self.layout = layout
        dynamic = arch is None
        self.static_arch = None if arch is None else dict(arch)
        self.first_conv = nn.Conv2d(
            layout.in_channels, layout.stem_width, 3, 2, padding=1, bias=False
        )
        self.first_bn = nn.BatchNorm2d(layout.stem_width)
        self.first_act = nn.Hardswish(inplace=True)
        self.first_block = InvertedResidual(
            layout.stem_width,
            layout.first_block_width,
            {1: layout.stem_width},
            (3,),
            1,
            se_widths=None,
            hswish=False,
            expand=False,
            dynamic=False,
        )
        width = layout.first_block_width
        self._gene_names: list[tuple[str, list[tuple[str, str]]]] = []
        self._stages: list[Stage] = []
        for index, (out_width, stride, se, hswish) in enumerate(
            zip(
                layout.stage_widths,
                layout.stage_strides,
                layout.stage_se,
                layout.stage_hswish,
                strict=True,
            ),
            start=1,
        ):
            prefix = f"stage{index}"
            depth = max(layout.depths) if arch is None else arch[f"{prefix}.depth"]
            blocks = []
            names = []
            for block_index in range(1, depth + 1):
                block_prefix = f"{prefix}.block{block_index}"
                names.append((f"{block_prefix}.expand", f"{block_prefix}.kernel"))
                in_width = width if block_index == 1 else out_width
                expands = layout.expands if arch is None else (arch[names[-1][0]],)
                kernels = layout.kernels if arch is None else (arch[names[-1][1]],)
                middles = {e: layout.middle_width(in_width, e) for e in expands}
                blocks.append(
                    InvertedResidual(
                        in_width,
                        out_width,
                        middles,
                        kernels,
                        stride if block_index == 1 else 1,
                        se_widths=(
                            {e: layout.squeezed_width(m) for e, m in middles.items()}
                            if se
                            else None
                        ),
                        hswish=hswish,
                        dynamic=dynamic,
                    )
                )
            stage = Stage(blocks)
            self.add_module(prefix, stage)
            self._stages.append(stage)
            self._gene_names.append((f"{prefix}.depth", names))
            width = out_width
        self.final_expand = nn.Conv2d(width, layout.final_width, 1, bias=False)
        self.final_bn = nn.BatchNorm2d(layout.final_width)
        self.final_act = nn.Hardswish(inplace=True)
        self.feature_mix = nn.Conv2d(layout.final_width, layout.feature_width, 1, bias=False)
        self.feature_act = nn.Hardswish(inplace=True)
        self.classifier = nn.Linear(layout.feature_width, layout.num_classes)
        self._initialise()
        self.to(memory_format=self.memory_format)
        self._largest = self.largest_arch()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last activations and weights: on CPUs oneDNN's depth-wise convolutions
        # (forward and backward) run about twice as fast in that layout
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.first_act(self.first_bn(self.first_conv(x)))
        x = self.first_block(x)
        for stage in self._stages:
            x = stage(x)
        x = self.final_act(self.final_bn(self.final_expand(x)))
        x = self.feature_act(self.feature_mix(x.mean((2, 3), keepdim=True)))
        return self.classifier(torch.flatten(x, 1))  # type: ignore[no-any-return]

    # -- the architecture ---------------------------------------------------------------

    def largest_arch(self) -> dict[str, int]:
        """Every gene of the widest, deepest architecture (the supernet's, or the static one)."""
        if self.static_arch is not None:
            return dict(self.static_arch)
        layout = self.layout
        arch: dict[str, int] = {}
        for depth_name, blocks in self._gene_names:
            arch[depth_name] = max(layout.depths)
            for expand_name, kernel_name in blocks:
                arch[expand_name] = max(layout.expands)
                arch[kernel_name] = max(layout.kernels)
        return arch

    def set_arch(self, arch: ArchValues | None) -> None:
        """Run the architecture ``arch`` (active genes by name; None: the largest).

        Raises:
            KeyError: ``arch`` lacks a gene of a block it runs (configs are validated first).
        """
        if self.static_arch is not None:
            return
        if arch is None:
            arch = self._largest
        for stage, (depth_name, blocks) in zip(self._stages, self._gene_names, strict=True):
            depth = arch[depth_name]
            stage.active_depth = depth
            for block, (expand_name, kernel_name) in zip(
                stage._modules.values(), blocks[:depth], strict=False
            ):
                block.set_choice(arch[expand_name], arch[kernel_name])  # type: ignore[union-attr,operator]

    def elastic_space(
        self,
        *,
        w_bits: Sequence[int],
        a_bits: Sequence[int],
        granularities: Sequence[Granularity | str],
        w_symmetries: Sequence[bool],
        a_symmetries: Sequence[bool],
        first_last: tuple[int, int] | None,
    ) -> ElasticSpace:
        """The joint space of this supernet (declared from its layout, no forward needed)."""
        return mobilenet_v3_space(
            self.layout,
            w_bits=w_bits,
            a_bits=a_bits,
            granularities=granularities,
            w_symmetries=w_symmetries,
            a_symmetries=a_symmetries,
            first_last=first_last,
        )

    @torch.no_grad()
    def static_copy(self, arch: ArchValues) -> MobileNetV3Supernet:
        """A static network of the architecture ``arch`` holding copies of this supernet's
        sliced weights and BN statistics (the first channels, the central kernel)."""
        static = MobileNetV3Supernet(self.layout, arch).to(self.first_conv.weight.device)
        own = dict(self.state_dict())
        for name, tensor in static.state_dict().items():
            tensor.copy_(slice_like(own[name], tensor.shape))
        return static.train(self.training)

    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Sort every block's hidden and SE channels by importance (see
        :meth:`InvertedResidual.reorder_channels`).

        Raises:
            ValueError: a layer's quantizer is calibrated already (its per-channel step sizes
                would no longer match their channels).
        """
        for name, module in self.named_modules():
            quantizer = getattr(module, "quantizer", None)
            if quantizer is not None and bool(getattr(quantizer, "calibrated", False)):
                raise InputError(
                    f"reorder channels before initialising the quantizers ({name} is calibrated)"
                )
        for stage in self._stages:
            for block in stage.blocks():
                block.reorder_channels()


def slice_like(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The first entries of ``tensor`` along each dimension, and the centre of a conv weight's
    kernel (dimensions 2 and 3 of a 4-d tensor): the part a smaller layer of ``shape`` uses."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    index: list[slice] = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape, strict=True)):
        if want > have:
            raise InputError(f"cannot slice {tuple(tensor.shape)} to the larger {tuple(shape)}")
        start = (have - want) // 2 if tensor.dim() == 4 and dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


def build_mobilenet(
    layout: MobileNetV3Layout,
    num_classes: int,
    in_channels: int,
    image_size: int,
    architecture: Mapping[str, Sequence[int]] | None = None,
) -> MobileNetV3Supernet:
    """The supernet of ``layout`` for the data (classes, channels, resolution) and choice sets
    (``architecture`` options replace the layout's)."""
    shaped = replace(
        layout, num_classes=num_classes, in_channels=in_channels, resolutions=(image_size,)
    )
    if architecture:
        shaped = shaped.with_architecture(architecture)
    return MobileNetV3Supernet(shaped)
