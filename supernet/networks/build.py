"""A registered model built as an elastic supernet from a space description (``SpaceSpec``), and
the description a built supernet records."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch

from eqsearch.errors import InputError
from eqsearch.space import Granularity
from eqsearch.space.spec import SpaceSpec
from supernet.networks.elastic import Supernet, to_joint_supernet, to_supernet
from supernet.networks.models import create_model, model_entry
from supernet.quantizers import QuantizerSpec, quantizer_class


def quantizer_spec(space: SpaceSpec) -> QuantizerSpec:
    """The quantizer spec of the elastic layers, forms left at None resolved to what the
    quantizer supports (ValueError for an unknown quantizer)."""
    quantizer_type = quantizer_class(space.quantizer)
    resolved = space.resolved(
        [Granularity(g).value for g in quantizer_type.supported_granularities],
        quantizer_type.supported_w_symmetries,
        quantizer_type.supported_a_symmetries,
    )
    assert resolved.granularities and resolved.w_symmetries and resolved.a_symmetries
    return QuantizerSpec(
        name=resolved.quantizer,
        w_bits=resolved.w_bits,
        a_bits=resolved.a_bits,
        granularities=tuple(Granularity(g) for g in resolved.granularities),
        w_symmetries=resolved.w_symmetries,
        a_symmetries=resolved.a_symmetries,
    )


def build_supernet(
    model_name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    space: SpaceSpec | None = None,
    pretrained: bool = False,
    **space_fields: Any,
) -> Supernet:
    """Build a registered model and make it an elastic supernet.

    Args:
        model_name: a name from ``supernet.networks.models.MODELS`` (``lenet5``, ``resnet20``, ...).
        num_classes, in_channels, image_size: the data the model sees.
        space: what the supernet serves (quantizer, bits, forms, first/last pinning,
            architecture choices); ``SpaceSpec()`` by default.
        pretrained: start from torchvision weights found in the local cache (never downloads).
        space_fields: single :class:`SpaceSpec` fields instead of ``space`` (``quantizer``,
            ``w_bits``, ``a_bits``, ``granularities``, ``w_symmetries``, ``a_symmetries``,
            ``first_last``), set on top of ``space``.
    """
    spec = replace(space or SpaceSpec(), **_space_fields(space_fields))
    entry = model_entry(model_name)
    if spec.architecture and not entry.joint:
        raise InputError(
            f"model {model_name!r} has a fixed architecture; it takes no architecture choices "
            f"({', '.join(name for name, _ in spec.architecture)})"
        )
    size = entry.image_size if image_size is None else image_size
    model = create_model(
        model_name,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=size,
        pretrained=pretrained,
        architecture=spec.architecture_options if entry.joint else None,
    )
    build_info = {
        "model": model_name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": size,
    }
    if entry.joint:
        return to_joint_supernet(
            model, spec=quantizer_spec(spec), first_last=spec.first_last, build_info=build_info
        )
    example = torch.zeros(2, in_channels, size, size)
    return to_supernet(
        model,
        example_input=example,
        spec=quantizer_spec(spec),
        first_last=spec.first_last,
        build_info=build_info,
    )


def _space_fields(values: dict[str, Any]) -> dict[str, Any]:
    known = {field.name for field in fields(SpaceSpec)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"build_supernet() got unexpected keyword argument(s) {', '.join(unknown)}")
    return {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in values.items()
        if value is not None
    }


def stored_space_spec(build_info: dict[str, Any]) -> SpaceSpec:
    """The space description of a checkpoint's build info (today's and older layouts)."""
    if "space" in build_info:
        return SpaceSpec.from_dict(build_info["space"])
    quantizer = build_info["quantizer"]
    return SpaceSpec(
        quantizer=quantizer["name"],
        w_bits=tuple(quantizer["w_bits"]),
        a_bits=tuple(quantizer["a_bits"]),
        granularities=tuple(quantizer["granularities"]),
        w_symmetries=tuple(quantizer["w_symmetries"]),
        a_symmetries=tuple(quantizer["a_symmetries"]),
        first_last=str(build_info["first_last"]),
    )
