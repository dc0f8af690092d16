"""A subnet of an elastic space: one choice per running layer and its architecture."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.numbers import loads_json
from eqsearch.space.arrays import ArchChoices
from eqsearch.space.forms import LayerChoice, QuantForm, require_tuple_of


def arch_choices(arch: Mapping[str, int] | Iterable[tuple[str, int]]) -> ArchChoices:
    items = arch.items() if isinstance(arch, Mapping) else arch
    choices: dict[str, int] = {}
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"SubnetConfig.arch must map gene names to values; got {item!r}")
        name, value = item
        if not isinstance(name, str) or not name:
            raise InputError(f"SubnetConfig.arch gene names must be strings; got {name!r}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputError(f"SubnetConfig.arch[{name!r}] must be an integer; got {value!r}")
        if name in choices:
            raise InputError(f"SubnetConfig.arch names gene {name!r} twice")
        choices[name] = int(value)
    return tuple(sorted(choices.items()))


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet of an elastic space.

    Args:
        choices: a :class:`LayerChoice` per layer in space order — per *active* layer in a
            joint space (a block its depth switches off has none).
        arch: the architecture choices of a joint space, ``{gene name: value}`` for its active
            genes only (a mapping or pairs; stored sorted by name). Empty for a space without
            architecture genes.
    """

    choices: tuple[LayerChoice, ...]
    arch: ArchChoices = ()

    def __post_init__(self) -> None:
        choices = require_tuple_of(
            self.choices, LayerChoice, "SubnetConfig.choices", "one LayerChoice per layer; got none"
        )
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "arch", arch_choices(self.arch))

    def __len__(self) -> int:
        return len(self.choices)

    def __iter__(self) -> Iterator[LayerChoice]:
        return iter(self.choices)

    @property
    def arch_dict(self) -> dict[str, int]:
        """The architecture choices as a dict (empty without architecture genes)."""
        return dict(self.arch)

    @property
    def uniform_form(self) -> QuantForm | None:
        """The form shared by every layer, or None when layers differ."""
        forms = {choice.form for choice in self.choices}
        return forms.pop() if len(forms) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict ``{"choices": [...]}`` (``{"arch": {...}, "choices": [...]}`` in a
        joint space)."""
        data: dict[str, Any] = {"arch": dict(self.arch)} if self.arch else {}
        data["choices"] = [choice.to_dict() for choice in self.choices]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetConfig:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list):
            raise InputError("a subnet config is a JSON object with a list under 'choices'")
        arch = data.get("arch", {})
        if not isinstance(arch, Mapping):
            raise InputError("a subnet config's 'arch' must map gene names to values")
        return cls(
            tuple(LayerChoice.from_dict(item) for item in data["choices"]), arch_choices(arch)
        )

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SubnetConfig:
        """Parse :meth:`to_json` output."""
        try:
            data = loads_json(text)
        except json.JSONDecodeError as error:
            raise InputError(f"a subnet config must be JSON: {error}") from None
        return cls.from_dict(data)

    def __str__(self) -> str:
        weights = ",".join(str(choice.w_bits) for choice in self.choices)
        activations = ",".join(str(choice.a_bits) for choice in self.choices)
        form = self.uniform_form
        text = f"W[{weights}] A[{activations}] {form if form else 'mixed forms'}"
        if self.arch:
            text = " ".join(f"{name}={value}" for name, value in self.arch) + " | " + text
        return text
