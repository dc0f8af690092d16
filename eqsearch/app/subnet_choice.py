"""Which subnet a command means: a config file, ``pareto.json#INDEX``, or uniform W/A bits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eqsearch.errors import InputError
from eqsearch.numbers import NumberError, parse_integer, shown_text

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace, SubnetConfig


def bits_pair(text: str) -> tuple[int, int]:
    """``"4/4"`` or ``"4"`` → (weight bits, activation bits)."""
    parts = text.split("/")
    try:
        if len(parts) == 2:
            return parse_integer(parts[0].strip()), parse_integer(parts[1].strip())
        return parse_integer(text.strip()), parse_integer(text.strip())
    except ValueError:
        raise InputError(f"expected W/A bits like '4/4'; got {text!r}") from None


def load_config_argument(reference: str, space: ElasticSpace) -> SubnetConfig:
    """A config from ``cfg.json`` or ``pareto.json#3``, validated against ``space``.

    Raises:
        InputError: the file is missing, too large, not JSON, not a config (or a Pareto front
            of this space for ``#INDEX``), or the config is not in ``space``.
    """
    from eqsearch.files import read_json
    from eqsearch.pareto import ParetoFront
    from eqsearch.space import SubnetConfig

    path, hash_sign, index = reference.partition("#")
    if hash_sign:
        try:
            position = parse_integer(index)
        except NumberError:
            position = -1
        if position < 0 or index.startswith(("+", "-")):
            raise InputError(
                f"{path}#: the part after # must be a config index 0, 1, 2, ...; got "
                f"{shown_text(index)}"
            )
        front = ParetoFront.from_json(path, space)
        if position >= len(front):
            raise InputError(
                f"{path} has {len(front)} configs (#0..#{len(front) - 1}); got #{position}"
            )
        return front.configs[position]
    data = read_json(path, what="config file")
    try:
        config = SubnetConfig.from_dict(data)
    except (TypeError, AttributeError, KeyError) as error:
        raise InputError(f"{path} is not a subnet config ({error})") from None
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    try:
        return space.validate(config)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
