"""What the search and the cost models know of a layer: sizes, pins, geometry, activity."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.space.forms import FULL_PRECISION_BITS, require_bits
from eqsearch.space.genes import Condition, conditions_tuple
from eqsearch.space.geometry import LayerGeometry

LAYER_KINDS = ("conv", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """What the search and the cost models know of one quantizable layer.

    Args:
        name: module path in the model (``"layer1.0.conv1"``).
        kind: ``"conv"`` or ``"linear"``.
        n_params: number of weight elements (of the largest architecture in a joint space).
        macs: multiply-accumulates per input sample (largest architecture).
        n_inputs: input activation elements per sample (largest architecture).
        out_channels: output channels (number of per-channel step sizes; largest architecture).
        pinned: ``(w_bits, a_bits)`` the layer is fixed to, ``(32, 32)`` for full precision,
            or None when the search chooses its bits.
        geometry: in a joint space, how the layer's shape follows the architecture genes
            (None: the constants above hold for every architecture).
        active_if: in a joint space, conditions on the genes that must all hold for the layer
            to run (a block switched off by its stage's depth); empty: always runs.
    """

    name: str
    kind: str
    n_params: int
    macs: int
    n_inputs: int
    out_channels: int
    pinned: tuple[int, int] | None = None
    geometry: LayerGeometry | None = None
    active_if: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"LayerSpec.name must be a non-empty string; got {self.name!r}")
        if self.kind not in LAYER_KINDS:
            raise InputError(f"LayerSpec.kind must be one of {LAYER_KINDS}; got {self.kind!r}")
        for name in ("n_params", "macs", "n_inputs", "out_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"LayerSpec.{name} must be a positive integer; got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.pinned is not None:
            pinned = tuple(self.pinned)
            if len(pinned) != 2:
                raise InputError(
                    f"LayerSpec.pinned must be (w_bits, a_bits) or None; got {self.pinned!r}"
                )
            w_bits = require_bits(pinned[0], "LayerSpec.pinned w_bits", allow_full_precision=True)
            a_bits = require_bits(pinned[1], "LayerSpec.pinned a_bits", allow_full_precision=True)
            if (w_bits == FULL_PRECISION_BITS) != (a_bits == FULL_PRECISION_BITS):
                raise InputError(
                    "LayerSpec.pinned: full precision (32) must apply to weights and "
                    f"activations together; got {pinned}"
                )
            object.__setattr__(self, "pinned", (w_bits, a_bits))
        if self.geometry is not None:
            if not isinstance(self.geometry, LayerGeometry):
                raise InputError(
                    f"LayerSpec.geometry must be a LayerGeometry or None; got {self.geometry!r}"
                )
            if self.kind == "linear" and (
                self.geometry.kernel.largest != 1 or self.geometry.depthwise
            ):
                raise InputError(f"LayerSpec {self.name!r}: a linear layer has kernel 1, no groups")
            largest = self.geometry.largest()
            measured = {name: getattr(self, name) for name in largest}
            if largest != measured:
                raise InputError(
                    f"LayerSpec {self.name!r}: the constants {measured} differ from its "
                    f"geometry's largest architecture {largest}"
                )
        object.__setattr__(
            self,
            "active_if",
            conditions_tuple(self.active_if, f"LayerSpec {self.name!r} active_if"),
        )

    @classmethod
    def from_geometry(
        cls,
        name: str,
        kind: str,
        geometry: LayerGeometry,
        *,
        pinned: tuple[int, int] | None = None,
        active_if: Iterable[Condition] = (),
    ) -> LayerSpec:
        """A layer of a joint space: its constants are its geometry's largest architecture."""
        return cls(
            name,
            kind,
            **geometry.largest(),
            pinned=pinned,
            geometry=geometry,
            active_if=tuple(active_if),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields (``geometry`` and ``active_if`` only where set)."""
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "n_params": self.n_params,
            "macs": self.macs,
            "n_inputs": self.n_inputs,
            "out_channels": self.out_channels,
            "pinned": list(self.pinned) if self.pinned is not None else None,
        }
        if self.geometry is not None:
            data["geometry"] = self.geometry.to_dict()
        if self.active_if:
            data["active_if"] = [condition.to_dict() for condition in self.active_if]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """Inverse of :meth:`to_dict`."""
        pinned = data.get("pinned")
        geometry = data.get("geometry")
        return cls(
            name=data["name"],
            kind=data["kind"],
            n_params=data["n_params"],
            macs=data["macs"],
            n_inputs=data["n_inputs"],
            out_channels=data["out_channels"],
            pinned=(int(pinned[0]), int(pinned[1])) if pinned is not None else None,
            geometry=LayerGeometry.from_dict(geometry) if geometry is not None else None,
            active_if=tuple(Condition.from_dict(item) for item in data.get("active_if", ())),
        )
