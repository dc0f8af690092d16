"""Model architectures by name: small CNNs for tests and demos, torchvision backbones."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eqsearch.errors import InputError
from eqsearch.factories import check_named_by_file, is_reference, load_factory
from eqsearch.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    ``architecture`` is None for a fixed architecture; an elastic-architecture model (a joint
    architecture × quantization supernet) gives its default choice sets by option name, and
    its ``build`` takes them as the keyword ``architecture``.
    """

    name: str
    build: Callable[..., nn.Module]
    image_size: int
    min_image_size: int
    description: str
    torchvision_name: str | None = None
    architecture: Mapping[str, tuple[int, ...]] | None = None

    @property
    def joint(self) -> bool:
        """Whether the model is elastic in its architecture too."""
        return self.architecture is not None


MODELS: Registry[ModelEntry] = Registry("model")
"""Every registered architecture by name (see :func:`register_model`)."""


def register_model(
    name: str,
    *,
    image_size: int,
    min_image_size: int,
    description: str,
    torchvision_name: str | None = None,
    architecture: Mapping[str, Sequence[int]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``build(num_classes, in_channels, image_size) -> nn.Module`` under ``name``
    (an elastic-architecture model: ``build(..., architecture=options)`` and its default
    ``architecture`` choice sets)."""

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        options = (
            None
            if architecture is None
            else {key: tuple(values) for key, values in architecture.items()}
        )
        MODELS.add(
            name,
            ModelEntry(
                name, build, image_size, min_image_size, description, torchvision_name, options
            ),
        )
        return build

    return decorate


ENTRY_POINT_GROUP = "eqsearch.models"
"""Packages add models under this entry-point group: ``name = "package.module:factory"``."""


def model_entry(name: str) -> ModelEntry:
    """The model called ``name``: registered, an installed package's entry point, or a factory
    the caller names (``"package.module:function"`` or ``"path/to/file.py:function"``; its
    module is imported, which runs its code, and the reference counts as trusted in this
    process from then on: see :mod:`eqsearch.factories`).

    A factory takes ``(num_classes, in_channels, image_size)`` and returns an ``nn.Module``;
    optional attributes ``image_size`` and ``min_image_size`` give its defaults. The name is
    stored in checkpoints; a checkpoint or config file that names a factory is loaded only
    where the user names it too (:func:`model_entry_named_by_file`).

    Raises:
        InputError: unknown name, a module that does not import, or no such factory.
    """
    if name in MODELS:
        return MODELS[name]
    if is_reference(name):
        return _factory_entry(name)
    for entry_point in _entry_points():
        if entry_point.name == name:
            return _factory_entry(entry_point.value, name=name)
    raise InputError(
        f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))} (or give a factory "
        "as package.module:function or path/to/file.py:function, or install a package with an "
        "eqsearch.models entry point)"
    )


def check_model_named_by_file(name: Any, *, source: str) -> None:
    """Refuse a model name read from a file (a checkpoint, a config) that is a factory the
    user has not named: a file may name registered models and installed packages' entry
    points, never code of its own choosing.

    Raises:
        InputError: not a string, or an untrusted ``module:function`` (the line says how to
            allow it).
    """
    if not isinstance(name, str):
        raise InputError(f"{source}: the model must be a name; got {type(name).__name__}")
    check_named_by_file(name, source=source, what="model")


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def plugin_models() -> dict[str, str]:
    """Models that installed packages declare as entry points: name → ``module:factory``."""
    return {entry_point.name: entry_point.value for entry_point in _entry_points()}


def _factory_entry(reference: str, *, name: str | None = None) -> ModelEntry:
    factory = load_factory(reference, what="model factory")
    attribute = reference.rpartition(":")[2]
    if attribute in MODELS and reference not in MODELS:  # the module registered it by name
        return MODELS[attribute]
    doc = (factory.__doc__ or "").strip().splitlines()
    return ModelEntry(
        name or reference,
        factory,
        int(getattr(factory, "image_size", 32)),
        int(getattr(factory, "min_image_size", 1)),
        doc[0] if doc else f"user model {reference}",
    )


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    pretrained: bool = False,
    architecture: Mapping[str, Sequence[int]] | None = None,
) -> nn.Module:
    """A randomly initialised (or locally cached torchvision-pretrained) full-precision model.

    Args:
        name: registered model name (see ``MODELS``).
        num_classes: classifier outputs.
        in_channels: input image channels.
        image_size: input height = width (the model's default when None).
        pretrained: load torchvision's ImageNet weights from the local torch hub cache; never
            downloads. The classifier (and the first conv, for ``in_channels != 3``) are
            re-initialised when their shapes differ.
        architecture: choice sets of an elastic-architecture model by option name (its
            defaults where not given); a fixed architecture takes none.
    """
    entry = model_entry(name)
    size = entry.image_size if image_size is None else image_size
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2; got {num_classes}")
    if in_channels < 1:
        raise InputError(f"in_channels must be >= 1; got {in_channels}")
    if size < entry.min_image_size:
        raise InputError(f"{name} needs image_size >= {entry.min_image_size}; got {size}")
    if entry.architecture is None:
        if architecture:
            raise InputError(
                f"model {name!r} has a fixed architecture; it takes no architecture choices "
                f"({', '.join(architecture)})"
            )
        model = entry.build(num_classes, in_channels, size)
    else:
        options: dict[str, Any] = dict(entry.architecture)
        unknown = sorted(set(architecture or {}) - set(options))
        if unknown:
            raise InputError(
                f"model {name!r} takes the architecture options {', '.join(options)}; got "
                f"{', '.join(unknown)}"
            )
        options.update({key: tuple(values) for key, values in (architecture or {}).items()})
        model = entry.build(num_classes, in_channels, size, architecture=options)
    if pretrained:
        _load_torchvision_weights(entry, model, num_classes, in_channels)
    return model


def _load_torchvision_weights(
    entry: ModelEntry, model: nn.Module, num_classes: int, in_channels: int
) -> None:
    if entry.torchvision_name is None:
        raise InputError(f"{entry.name} has no torchvision pretrained weights")
    import torchvision

    weights = torchvision.models.get_model_weights(entry.torchvision_name).DEFAULT  # type: ignore[attr-defined]
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.exists(path):
        raise InputError(
            f"pretrained {entry.name} weights are not in the local torch hub cache (expected "
            f"{path}); eqsearch never downloads: place the file there, or start from "
            "--init fp.pt or FP pretraining"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)


# -- small CNNs ---------------------------------------------------------------------------


@register_model(
    "tiny_convnet", image_size=8, min_image_size=4, description="3 convs + linear, for tests"
)
def tiny_convnet(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Three 3×3 convs (8, 16, 16 channels) with BN and ReLU, global pooling, a linear head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


class LeNet5(nn.Module):
    """LeNet-5 with batch norm after each conv (so BN re-calibration applies)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        spatial = (image_size // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * spatial * spatial, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


@register_model(
    "lenet5", image_size=28, min_image_size=12, description="LeNet-5 with BN (MNIST-size)"
)
def lenet5(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """LeNet-5 (2 convs, 3 linears) for 28×28 digits."""
    return LeNet5(num_classes, in_channels, image_size)


class BasicBlock(nn.Module):
    """ResNet basic block; a 1×1 conv + BN shortcut where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))  # type: ignore[no-any-return]


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: a 3×3 stem, three stages of basic blocks (16/32/64 channels)."""

    def __init__(self, blocks_per_stage: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        channels = 16
        for stage, width in enumerate((16, 32, 64)):
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))  # type: ignore[no-any-return]


@register_model(
    "resnet20", image_size=32, min_image_size=8, description="CIFAR ResNet-20 (3 × 3 blocks)"
)
def resnet20(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-20 for 32×32 images (He et al. 2016, CIFAR variant)."""
    return CifarResNet(3, num_classes, in_channels)


# -- torchvision backbones ----------------------------------------------------------------


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )


def _first_conv_attribute(model: Any, in_channels: int) -> None:
    model.conv1 = _replace_first_conv(model.conv1, in_channels)


def _first_conv_in_features(model: Any, in_channels: int) -> None:
    model.features[0][0] = _replace_first_conv(model.features[0][0], in_channels)


def _register_torchvision(
    name: str, title: str, description: str, adapt_stem: Callable[[Any, int], None]
) -> None:
    """Register torchvision's ``name`` with its first convolution taking ``in_channels``."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, name)(num_classes=num_classes)
        adapt_stem(model, in_channels)
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision's {title}."
    register_model(
        name,
        image_size=224,
        min_image_size=32,
        description=description,
        torchvision_name=name,
    )(build)


_register_torchvision("resnet18", "ResNet-18", "torchvision ResNet-18", _first_conv_attribute)
_register_torchvision("resnet50", "ResNet-50", "torchvision ResNet-50", _first_conv_attribute)
_register_torchvision(
    "mobilenet_v2", "MobileNetV2", "torchvision MobileNetV2", _first_conv_in_features
)
_register_torchvision(
    "efficientnet_b0",
    "EfficientNet-B0",
    "torchvision EfficientNet-B0 (SiLU: signed activations)",
    _first_conv_in_features,
)


# -- the OFA/OQA MobileNetV3 family (elastic in depth, expand ratio and kernel) ------------------


def _register_mobilenet_family() -> None:
    from eqsearch.space.mobilenet import ARCHITECTURE_OPTIONS, FAMILY

    descriptions = {
        "oqa_mbv3": "OFA/OQA MobileNetV3 supernet: 5 stages, depth 2-4, expand 3/4/6, kernel 3/5/7",
        "oqa_mbv3_small": "OQA MobileNetV3 family, 32x32: 3 stages, depth 1-2, expand 3/6, "
        "kernel 3/5",
        "oqa_mbv3_tiny": "OQA MobileNetV3 family, 28x28: 3 narrow stages, depth 1-2, "
        "expand 3/6, kernel 3/5",
    }
    for name, layout in FAMILY.items():

        def build(
            num_classes: int,
            in_channels: int,
            image_size: int,
            *,
            architecture: Mapping[str, Sequence[int]],
            layout: Any = layout,
        ) -> nn.Module:
            from supernet.networks.mobilenet import build_mobilenet

            return build_mobilenet(layout, num_classes, in_channels, image_size, architecture)

        register_model(
            name,
            image_size=layout.resolutions[0],
            min_image_size=16 if name == "oqa_mbv3" else 8,
            description=descriptions[name],
            architecture={option: getattr(layout, option) for option in ARCHITECTURE_OPTIONS},
        )(build)


_register_mobilenet_family()
