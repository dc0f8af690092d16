"""A joint supernet's subnet as a static network: sliced weights, BN statistics and quantizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from eqsearch.errors import InputError
from eqsearch.space import SubnetConfig
from eqsearch.space.spec import SpaceSpec
from supernet.networks.build import build_supernet, quantizer_spec, stored_space_spec
from supernet.networks.calibrate import calibrate_bn, preserved_bn_state
from supernet.networks.elastic import Supernet, to_supernet, use_channels_last
from supernet.networks.mobilenet import slice_like


def extract(
    supernet: Supernet,
    config: SubnetConfig,
    *,
    calibration_images: torch.Tensor | Iterable[torch.Tensor] | None = None,
    batch_size: int = 256,
) -> Supernet:
    """The subnet ``config`` of a joint supernet as a static network of its architecture.

    The result is a fixed-architecture :class:`Supernet` of plain ``Conv2d``/``BatchNorm2d``/
    ``Linear`` layers (its elastic layers the usual :class:`ElasticQuantConv2d` twins), built
    from copies of the supernet's weights sliced to the chosen widths and kernels, its BN
    statistics (the first channels) and its quantizers' step sizes and offsets (per-channel
    entries of the first channels), with the config's layer choices active. Its outputs equal
    the supernet's for ``config``; its space is measured on it as for any fixed model, so its
    costs are the joint space's costs of ``config``. It is exported, packed or searched for
    bits like any fixed supernet (``extracted.active_subnet()`` is its config).

    Args:
        supernet: a joint supernet (its space has architecture genes).
        config: a config of its space.
        calibration_images: re-calibrate the BN statistics for ``config`` first, on a tensor
            or an iterable of image batches (on the supernet, whose own statistics are
            restored); None copies the current ones.
        batch_size: chunk size of the calibration.

    Raises:
        ValueError: ``supernet`` is not joint, or ``config`` is not in its space.
    """
    if not supernet.joint:
        raise InputError("extract needs a joint (elastic-architecture) supernet")
    space = supernet.space
    config = space.validate(config)
    arch = config.arch_dict
    model: Any = supernet.model
    with preserved_bn_state(supernet), supernet.using(config):
        if calibration_images is not None:
            calibrate_bn(supernet, calibration_images, batch_size=batch_size)
        static_model = model.static_copy(arch)
    info = supernet.build_info
    joint_spec = stored_space_spec(info)
    build_info = {key: info[key] for key in ("model", "num_classes", "in_channels", "image_size")}
    build_info["extracted_from"] = {"space": joint_spec.to_dict(), "arch": arch}
    size = int(info["image_size"])
    device = next(supernet.parameters()).device
    example = torch.zeros(2, int(info["in_channels"]), size, size, device=device)
    static = to_supernet(
        static_model,
        example_input=example,
        spec=quantizer_spec(joint_spec),
        first_last=joint_spec.first_last,
        build_info=build_info,
    )
    sources = supernet.elastic_layers()
    for name, layer in static.elastic_layers().items():
        source = sources[name].quantizer.state_dict()
        target = layer.quantizer.state_dict()
        layer.quantizer.load_state_dict(
            {key: slice_like(source[key], value.shape) for key, value in target.items()}
        )
    use_channels_last(static_model, static.elastic_layers().values())
    static.set_subnet(static.space.validate(SubnetConfig(config.choices)))
    static.train(supernet.training)
    return static


def rebuild_extracted(build_info: dict[str, Any]) -> Supernet:
    """The (untrained) static network an extracted supernet's ``build_info`` describes: the
    joint supernet rebuilt, then its architecture extracted (weights are loaded after)."""
    origin = build_info["extracted_from"]
    joint = build_supernet(
        build_info["model"],
        num_classes=int(build_info["num_classes"]),
        in_channels=int(build_info["in_channels"]),
        image_size=int(build_info["image_size"]),
        space=SpaceSpec.from_dict(origin["space"]),
    )
    space = joint.space
    arch = {str(name): int(value) for name, value in dict(origin["arch"]).items()}
    config = space.uniform(space.w_bits[-1], space.a_bits[-1], arch=arch)
    if config.arch_dict != arch:
        raise InputError(f"the extracted architecture {arch} is not one of the model's")
    static = extract(joint, config)
    static.set_subnet(None)
    return static
