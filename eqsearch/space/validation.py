"""Whether a config belongs to a space: its architecture, pins, bits and forms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eqsearch.errors import InputError
from eqsearch.space.architecture import arch_of
from eqsearch.space.configs import SubnetConfig

if TYPE_CHECKING:
    from eqsearch.space.elastic import ElasticSpace


def validate_config(space: ElasticSpace, config: SubnetConfig) -> SubnetConfig:
    """Return ``config`` if it belongs to the space, else raise InputError naming why."""
    if not isinstance(config, SubnetConfig):
        raise InputError(f"expected a SubnetConfig; got {type(config).__name__}")
    if space.genes or config.arch:
        _, running = arch_of(space, config)
        layers = [(i, layer) for i, layer in enumerate(space.layers) if running[i]]
        if len(config.choices) != len(layers):
            raise InputError(
                f"config has {len(config.choices)} layer choices but its architecture runs "
                f"{len(layers)} of the space's {len(space.layers)} layers"
            )
    else:
        layers = list(enumerate(space.layers))
        if len(config.choices) != len(space.layers):
            raise InputError(
                f"config has {len(config.choices)} layer choices but the space has "
                f"{len(space.layers)} layers"
            )
    for (index, layer), choice in zip(layers, config.choices, strict=True):
        where = f"layer {index} ({layer.name!r})"
        if layer.pinned is not None:
            if (choice.w_bits, choice.a_bits) != layer.pinned:
                raise InputError(
                    f"{where} is pinned to w{layer.pinned[0]}/a{layer.pinned[1]} bits; "
                    f"got w{choice.w_bits}/a{choice.a_bits}"
                )
        else:
            if choice.w_bits not in space._w_bits_set:
                raise InputError(
                    f"{where}: w_bits {choice.w_bits} is not in the space's weight bits "
                    f"{space.w_bits}"
                )
            if choice.a_bits not in space._a_bits_set:
                raise InputError(
                    f"{where}: a_bits {choice.a_bits} is not in the space's activation bits "
                    f"{space.a_bits}"
                )
        if choice.form not in space._form_set:
            allowed = ", ".join(str(f) for f in space.forms)
            raise InputError(f"{where}: form {choice.form} is not in this space ({allowed})")
    return config
