"""Layers whose active width and kernel are set from outside: slices of shared weights (OFA)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from eqsearch.errors import InputError
from supernet.networks.layers import ElasticQuantLayer, channels_last
from supernet.quantizers import QuantizerSpec
from supernet.quantizers.base import ConvGeometry, autocast_off


class ActiveShape:
    """The active input/output channels and kernel of a dynamic layer (a plain holder: setting
    attributes of an ``nn.Module`` costs microseconds, and ``set_subnet`` sets hundreds)."""

    __slots__ = ("in_channels", "kernel", "out_channels", "sliced")

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel = kernel
        self.sliced = False


class DynamicConv2d(nn.Conv2d):
    """A Conv2d holding the weights of its largest shape and computing with a slice of them.

    :meth:`set_shape` chooses the active input and output channels (the first ones) and the
    active kernel (the centre of the largest kernel, padded to keep the output size); a
    depth-wise conv has one group per active channel. ``forward`` only reads the stored shape
    and slices views of the shared tensors (no copies, no new parameters).

    Args:
        in_channels, out_channels, kernel_size: the largest shape (square, odd kernel).
        stride: the stride (fixed).
        depthwise: one group per channel (``in_channels == out_channels``).
        bias: whether the conv has a bias (sliced to the active output channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        depthwise: bool = False,
        bias: bool = False,
    ) -> None:
        if kernel_size % 2 == 0:
            raise InputError(f"DynamicConv2d needs an odd kernel; got {kernel_size}")
        if depthwise and in_channels != out_channels:
            raise InputError("a depth-wise DynamicConv2d needs in_channels == out_channels")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=in_channels if depthwise else 1,
            bias=bias,
        )
        self.depthwise = depthwise
        self.max_kernel = kernel_size
        self.shape = ActiveShape(in_channels, out_channels, kernel_size)

    @property
    def active_in(self) -> int:
        """Active input channels."""
        return self.shape.in_channels

    @property
    def active_out(self) -> int:
        """Active output channels."""
        return self.shape.out_channels

    @property
    def active_kernel(self) -> int:
        """Active kernel side."""
        return self.shape.kernel

    def set_shape(self, in_channels: int, out_channels: int, kernel: int | None = None) -> None:
        """Compute with the first ``in_channels``/``out_channels`` and the central ``kernel``.

        Raises:
            ValueError: a size beyond the largest one, an even kernel, or a depth-wise conv
                with different input and output channels.
        """
        kernel = self.max_kernel if kernel is None else kernel
        if not (0 < in_channels <= self.in_channels and 0 < out_channels <= self.out_channels):
            raise InputError(
                f"active channels {in_channels}->{out_channels} exceed the layer's "
                f"{self.in_channels}->{self.out_channels}"
            )
        if kernel % 2 == 0 or not 0 < kernel <= self.max_kernel:
            raise InputError(f"active kernel must be odd and <= {self.max_kernel}; got {kernel}")
        if self.depthwise and in_channels != out_channels:
            raise InputError("a depth-wise conv keeps as many input channels as output channels")
        self.set_checked_shape(in_channels, out_channels, kernel)

    def set_checked_shape(self, in_channels: int, out_channels: int, kernel: int) -> None:
        """:meth:`set_shape` without its checks, for a shape known to fit (``set_subnet``'s
        hot path, where the space has validated the architecture)."""
        shape = self.shape
        shape.in_channels, shape.out_channels, shape.kernel = in_channels, out_channels, kernel
        shape.sliced = (
            in_channels != self.in_channels
            or out_channels != self.out_channels
            or kernel != self.max_kernel
        )

    def active_weight(self) -> torch.Tensor:
        """The weight of the active shape (a view of the shared weight)."""
        weight = self.weight
        shape = self.shape
        if not shape.sliced:
            return weight
        if self.depthwise:
            weight = weight[: shape.out_channels]
        else:
            weight = weight[: shape.out_channels, : shape.in_channels]
        if shape.kernel != self.max_kernel:
            start = (self.max_kernel - shape.kernel) // 2
            end = start + shape.kernel
            weight = weight[:, :, start:end, start:end]
        return weight

    def active_bias(self) -> torch.Tensor | None:
        """The bias of the active output channels (None without a bias)."""
        if self.bias is None or not self.shape.sliced:
            return self.bias
        return self.bias[: self.shape.out_channels]

    def active_geometry(self) -> ConvGeometry:
        """Stride, zero padding, dilation and groups of the active shape."""
        shape = self.shape
        padding = shape.kernel // 2
        groups = shape.out_channels if self.depthwise else 1
        return ConvGeometry(self.stride, (padding, padding), self.dilation, groups)

    def _dynamic_conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self.active_geometry().convolve(x, weight, self.active_bias())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._dynamic_conv(x, self.active_weight())

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, active={self.active_in}->{self.active_out} "
            f"k{self.active_kernel}"
        )


class DynamicQuantConv2d(ElasticQuantLayer, DynamicConv2d):
    """A :class:`DynamicConv2d` with elastic weight and input quantization.

    The quantizer holds one step size (and offset) per (bits, form) for the largest shape,
    shared by every architecture choice: per-channel steps are sliced to the active output
    channels and the LSQ gradient scale follows the active shape (see the quantizer).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        depthwise: bool = False,
        bias: bool = False,
        spec: QuantizerSpec | None = None,
    ) -> None:
        DynamicConv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, depthwise=depthwise, bias=bias
        )
        self._init_quantization(spec or QuantizerSpec())

    @classmethod
    def from_module(cls, conv: DynamicConv2d, spec: QuantizerSpec) -> DynamicQuantConv2d:
        """A quantized twin of ``conv`` with a copy of its parameters and active shape."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.max_kernel,
            conv.stride[0],
            depthwise=conv.depthwise,
            bias=conv.bias is not None,
            spec=spec,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        layer._copy_parameters(conv, spec)
        layer.set_shape(conv.active_in, conv.active_out, conv.active_kernel)
        return layer

    def quantized_weight(self) -> torch.Tensor:
        """The active weight as the active choice quantizes it (the latent slice when FP)."""
        return self.quantizer.quantize_weight(self.active_weight(), self.active.handle)

    def _active_weight_shape(self) -> tuple[int, int, int, int]:
        shape = self.shape
        in_channels = 1 if self.depthwise else shape.in_channels
        return (shape.out_channels, in_channels, shape.kernel, shape.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        handle = self.active.handle
        if handle is None:
            return self._dynamic_conv(x, self.active_weight())
        frozen = self.active.frozen_for(self.weight)
        if frozen is not None and tuple(frozen.weight.shape) == self._active_weight_shape():
            # operands frozen for this shape (supernet.evaluation.inference.frozen_weights); a shape
            # changed since (another architecture) takes the plain path
            x, weight = frozen.quantize_input(x), frozen.weight
        else:
            if x.requires_grad and torch.is_grad_enabled():
                # training: the quantizer may fuse input, weight and convolution
                geometry = self.active_geometry()._replace(channels_last=self.channels_last)
                return self.quantizer.quantized_conv2d(
                    x, self.active_weight(), self.active_bias(), handle, geometry
                )
            x = self.quantizer.quantize_input(x, handle)
            weight = self.quantizer.quantize_weight(self.active_weight(), handle)
        if self.channels_last:
            x, weight = channels_last(x), channels_last(weight)
        with autocast_off(x):  # quantized operands in their own precision
            return self._dynamic_conv(x, weight)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the first channels of its statistics and affine parameters: as many as
    its input has (the active width of the conv before it).

    Training updates only the active channels' running statistics; the others keep theirs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        # nn.BatchNorm2d's forward on views of the first ``channels`` entries (updated in place)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        use_batch = self.training or self.running_mean is None
        running_mean = self.running_mean
        running_var = self.running_var
        if running_mean is not None and running_var is not None:
            running_mean, running_var = running_mean[:channels], running_var[:channels]
        if not self.training or self.track_running_stats:
            statistics: tuple[Any, Any] = (running_mean, running_var)
        else:
            statistics = (None, None)
        return F.batch_norm(
            x,
            statistics[0],
            statistics[1],
            None if self.weight is None else self.weight[:channels],
            None if self.bias is None else self.bias[:channels],
            use_batch,
            factor,
            self.eps,
        )
