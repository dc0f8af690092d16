"""A measured latency model of a space: per layer, time by shape × kernel class, summed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.latency.fingerprint import MeasurementKey
from eqsearch.space import (
    ALL_FORMS,
    FULL_PRECISION_BITS,
    ConfigBatch,
    ElasticSpace,
    QuantForm,
    SubnetConfig,
)
from eqsearch.space.arrays import FloatArray, IntArray

LATENCY_FORMAT = "eqsearch-latency"
LATENCY_VERSION = 1
_BITS = FULL_PRECISION_BITS + 1


@dataclass(frozen=True)
class _Arrays:
    """A table's units as arrays for evaluating whole populations.

    ``macs[l, k]`` is the k-th smallest MAC count measured for layer ``l`` (padded with the
    largest int64), ``shape_ms[l, k]`` its time; ``lookup`` maps ``((role·B + w)·B + a)·F + f``
    to a class index (``B`` bit values, ``F`` forms; −1: none).
    """

    role_base: IntArray
    lookup: IntArray
    macs: IntArray
    shape_ms: FloatArray
    ratios: FloatArray
    columns: IntArray


@dataclass(frozen=True)
class LayerUnit:
    """The measured time of one layer of the space (with the nodes the runtime runs for it).

    ``time(shape, class) = shape_ms[shape] · class_ratio[class]``: the layer's time at each
    shape it takes (architecture choices) in the reference kernel class, and each class's
    time relative to the reference, measured at the largest shape.

    Args:
        name: the layer (as in the space).
        role: its probe role (``dense``, ``depthwise``, ...; see ``eqsearch.latency.kernels``).
        shapes: ``(params, macs, inputs)`` of each shape measured.
        shape_ms: milliseconds at each shape in the reference class.
        class_ratio: per class of the table, the time relative to the reference class.
    """

    name: str
    role: str
    shapes: tuple[tuple[int, int, int], ...]
    shape_ms: tuple[float, ...]
    class_ratio: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.shapes) != len(self.shape_ms) or not self.shapes:
            raise InputError(f"layer {self.name!r}: one time per shape is needed")
        values = np.asarray((*self.shape_ms, *self.class_ratio), dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InputError(f"layer {self.name!r}: times must be finite and non-negative")


@dataclass(frozen=True)
class LatencyTable:
    """Predicted latency (ms per inference) of every subnet of one space on one machine.

    Built by ``eqsearch latency build`` from measurements (``supernet.deployment.runtimes``); a
    pure data
    object here: the search evaluates it on whole populations in a few array gathers.

    Args:
        key: the machine, runtime and settings it was measured with.
        space_fingerprint: the space's fingerprint (a table predicts for that space only).
        classes: kernel-class labels (``form/int|float/clip|full``, and ``fp32``).
        class_map: per role, ``(w_bits, a_bits, form) → class index``.
        units: one per layer of the space, in its order.
        intercept_ms, slope: the whole network's time is ``intercept + slope · Σ layer times``
            (fitted on the measured whole subnets the layers came from).
        spread: median relative spread (inter-quartile range / median) of the measurements.
        validation: error statistics on held-out whole subnets (``n``, ``median_abs_error``,
            ``spearman``, ``bitops_spearman``, ``macs_spearman``, ...).
        holdout: the held-out subnets: ``config`` (a dict), ``measured_ms``, ``predicted_ms``.
        designed: the subnets the table was measured on: ``config``, ``measured_ms`` and
            ``layers_ms`` (the uncalibrated sum of layer times; the calibration's data).
        seconds: how long the build took.
    """

    key: MeasurementKey
    space_fingerprint: str
    classes: tuple[str, ...]
    class_map: Mapping[str, Mapping[tuple[int, int, str], int]]
    units: tuple[LayerUnit, ...]
    intercept_ms: float = 0.0
    slope: float = 1.0
    spread: float = 0.0
    validation: Mapping[str, float] = field(default_factory=dict)
    holdout: tuple[Mapping[str, Any], ...] = ()
    designed: tuple[Mapping[str, Any], ...] = ()
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "holdout", tuple(self.holdout))
        object.__setattr__(self, "designed", tuple(self.designed))
        if not self.units:
            raise InputError("a LatencyTable needs one unit per layer of its space")
        for unit in self.units:
            if len(unit.class_ratio) != len(self.classes):
                raise InputError(f"layer {unit.name!r}: one ratio per kernel class is needed")
        if not (np.isfinite(self.intercept_ms) and np.isfinite(self.slope) and self.slope > 0):
            raise InputError("LatencyTable: the calibration must be finite with a positive slope")

    # -- evaluation ---------------------------------------------------------------------------

    def check_space(self, space: ElasticSpace, source: str = "the latency table") -> None:
        """Raise InputError unless the table was built for ``space``."""
        if space.fingerprint != self.space_fingerprint or space.n_layers != len(self.units):
            raise InputError(
                f"{source} was measured for another space than this supernet's; build one "
                "for it with `eqsearch latency build`"
            )

    def _arrays(self) -> _Arrays:
        cached: _Arrays | None = self.__dict__.get("_cache")
        if cached is not None:
            return cached
        roles = sorted({unit.role for unit in self.units})
        forms = len(ALL_FORMS)
        lookup = np.full((len(roles), _BITS, _BITS, forms), -1, dtype=np.int64)
        for r, role in enumerate(roles):
            for (w_bits, a_bits, form), index in self.class_map.get(role, {}).items():
                lookup[r, w_bits, a_bits, ALL_FORMS.index(QuantForm.parse(form))] = index
        width = max(len(unit.shapes) for unit in self.units)
        macs = np.full((len(self.units), width), np.iinfo(np.int64).max, dtype=np.int64)
        shape_ms = np.zeros((len(self.units), width), dtype=np.float64)
        for row, unit in enumerate(self.units):
            order = sorted(range(len(unit.shapes)), key=lambda k: unit.shapes[k][1])
            macs[row, : len(order)] = [unit.shapes[k][1] for k in order]
            shape_ms[row, : len(order)] = [unit.shape_ms[k] for k in order]
            if len(set(macs[row, : len(order)].tolist())) != len(order):
                raise InputError(f"layer {unit.name!r}: two measured shapes with equal MACs")
        role_index = np.array([roles.index(unit.role) for unit in self.units], dtype=np.int64)
        result = _Arrays(
            role_base=role_index * (_BITS * _BITS * forms),
            lookup=lookup.reshape(-1),
            macs=macs,
            shape_ms=shape_ms,
            ratios=np.array([unit.class_ratio for unit in self.units], dtype=np.float64),
            columns=np.arange(len(self.units), dtype=np.int64),
        )
        object.__setattr__(self, "_cache", result)
        return result

    def layer_ms(self, batch: ConfigBatch) -> FloatArray:
        """Each layer's predicted time ``(n, layers)`` in ms (0 where a layer does not run),
        before the whole-network calibration."""
        arrays = self._arrays()
        layers = batch.w_bits.shape[1]
        if layers != len(self.units):
            raise InputError("the batch is of another space than the latency table's")
        active = batch.active
        forms = len(ALL_FORMS)
        flat = arrays.role_base + (batch.w_bits * _BITS + batch.a_bits) * forms + batch.form_index
        classes = arrays.lookup[flat]
        if np.any((classes < 0) & active):
            row, column = np.argwhere((classes < 0) & active)[0]
            raise InputError(
                f"the latency table has no kernel class for layer {self.units[column].name!r} "
                f"at W{batch.w_bits[row, column]}/A{batch.a_bits[row, column]}"
            )
        # a layer's measured shapes differ in MACs: its index among them is the count below
        macs = batch.macs.astype(np.int64)
        shape = np.zeros(macs.shape, dtype=np.int64)
        for column in arrays.macs.T[:-1]:  # a few shapes per layer: one pass each
            shape += macs > column
        columns = arrays.columns[:layers]
        missing = active & (arrays.macs[columns, shape] != macs)
        if missing.any():
            row, column = np.argwhere(missing)[0]
            raise InputError(
                f"the latency table has no measurement of layer "
                f"{self.units[column].name!r} with {int(macs[row, column])} MACs"
            )
        ratio = arrays.ratios[columns, np.maximum(classes, 0)]
        times: FloatArray = np.where(active, arrays.shape_ms[columns, shape] * ratio, 0.0)
        return times

    @property
    def runtime(self) -> str:
        """The runtime the table was measured on."""
        return self.key.runtime

    def predict(self, batch: ConfigBatch) -> FloatArray:
        """Predicted milliseconds per inference of each config of ``batch``."""
        total = self.layer_ms(batch).sum(axis=1)
        result: FloatArray = self.intercept_ms + self.slope * total
        return result

    def predict_configs(self, space: ElasticSpace, configs: Sequence[SubnetConfig]) -> FloatArray:
        """:meth:`predict` of a list of configs of ``space``."""
        return self.predict(space.batch(configs))

    # -- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``format`` ``eqsearch-latency``)."""
        return {
            "format": LATENCY_FORMAT,
            "version": LATENCY_VERSION,
            "key": self.key.to_dict(),
            "space_fingerprint": self.space_fingerprint,
            "classes": list(self.classes),
            "class_map": [
                [role, w_bits, a_bits, form, index]
                for role, entries in sorted(self.class_map.items())
                for (w_bits, a_bits, form), index in sorted(entries.items())
            ],
            "units": [
                {
                    "name": unit.name,
                    "role": unit.role,
                    "shapes": [list(shape) for shape in unit.shapes],
                    "shape_ms": [round(value, 6) for value in unit.shape_ms],
                    "class_ratio": [round(value, 6) for value in unit.class_ratio],
                }
                for unit in self.units
            ],
            "intercept_ms": self.intercept_ms,
            "slope": self.slope,
            "spread": self.spread,
            "validation": dict(self.validation),
            "holdout": [dict(row) for row in self.holdout],
            "designed": [dict(row) for row in self.designed],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "the latency table"
    ) -> LatencyTable:
        """Inverse of :meth:`to_dict` (InputError naming ``source`` when it is not one)."""
        if not isinstance(data, Mapping) or data.get("format") != LATENCY_FORMAT:
            raise InputError(f"{source} is not an eqsearch latency table")
        if data.get("version") != LATENCY_VERSION:
            raise InputError(f"{source}: latency format version {data.get('version')!r} is unknown")
        try:
            class_map: dict[str, dict[tuple[int, int, str], int]] = {}
            for role, w_bits, a_bits, form, index in data["class_map"]:
                class_map.setdefault(str(role), {})[(int(w_bits), int(a_bits), str(form))] = int(
                    index
                )
            units = tuple(
                LayerUnit(
                    str(unit["name"]),
                    str(unit["role"]),
                    tuple(
                        (int(shape[0]), int(shape[1]), int(shape[2])) for shape in unit["shapes"]
                    ),
                    tuple(float(value) for value in unit["shape_ms"]),
                    tuple(float(value) for value in unit["class_ratio"]),
                )
                for unit in data["units"]
            )
            return cls(
                key=MeasurementKey.from_dict(data["key"]),
                space_fingerprint=str(data["space_fingerprint"]),
                classes=tuple(str(label) for label in data["classes"]),
                class_map=class_map,
                units=units,
                intercept_ms=float(data["intercept_ms"]),
                slope=float(data["slope"]),
                spread=float(data["spread"]),
                validation={str(k): float(v) for k, v in dict(data["validation"]).items()},
                holdout=tuple(dict(row) for row in data.get("holdout", [])),
                designed=tuple(dict(row) for row in data.get("designed", [])),
                seconds=float(data.get("seconds", 0.0)),
            )
        except InputError as error:
            raise InputError(f"{source} is damaged ({error})") from None
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{source} is damaged ({type(error).__name__}: {error})") from None

    def save(self, path: str | Path) -> Path:
        """Write the table atomically as JSON."""
        import json

        from eqsearch.files import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save` (InputError when it is not one)."""
        from eqsearch.files import read_json

        return cls.from_dict(read_json(path, what="latency table"), source=str(path))
