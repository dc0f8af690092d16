"""What a runtime runs: per layer role and quantization choice, an integer kernel or a float one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.latency.fingerprint import MeasurementKey
from eqsearch.space import FULL_PRECISION_BITS, QuantForm

PROBE_FORMAT = "eqsearch-runtime-probe"
PROBE_VERSION = 1
ROLES = ("dense", "depthwise", "pointwise", "se.reduce", "se.expand", "linear", "classifier")
"""Layer roles the probe measures: a 3×3 conv, a depth-wise conv, a 1×1 conv, the two convs
of a squeeze-excitation block, a hidden linear layer and a classifier (float output)."""
KIND_OF_ROLE = {
    "dense": "dense",
    "pointwise": "dense",
    "depthwise": "depthwise",
    "se.reduce": "SE",
    "se.expand": "SE",
    "linear": "linear",
    "classifier": "linear",
}
STORAGES = ("int8", "int4")
"""How weight integers are stored: int8 (any grid up to 8 bits, widened), or INT4 (≤ 4 bits)."""
FULL_BITS = 8
"""The storage's own width: an activation grid narrower than it keeps an integer Clip."""


@dataclass(frozen=True)
class ProbeCell:
    """One measured (role, choice, storage): which kernel ran the layer and how fast.

    Args:
        role: one of :data:`ROLES`.
        form: the quantization form (``str(QuantForm)``).
        w_bits, a_bits: the bit widths.
        storage: ``int8`` or ``int4`` weight storage.
        kernel: the runtime's name of the kernel that ran the layer's conv or matmul.
        integer: whether that kernel computes in integers.
        layer_us: median time of the layer's nodes (µs).
        fp32_us: median time of the same layer in the FP32 export (µs).
    """

    role: str
    form: str
    w_bits: int
    a_bits: int
    storage: str
    kernel: str
    integer: bool
    layer_us: float
    fp32_us: float

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError(f"ProbeCell.role must be one of {', '.join(ROLES)}; got {self.role!r}")
        if self.storage not in STORAGES:
            raise InputError(f"ProbeCell.storage must be one of {STORAGES}; got {self.storage!r}")
        QuantForm.parse(self.form)

    @property
    def speedup(self) -> float:
        """FP32 time over this layer's time (> 1: faster than FP32)."""
        return self.fp32_us / self.layer_us if self.layer_us > 0 else float("nan")


@dataclass(frozen=True)
class KernelTable:
    """A runtime probe's measurements on one machine (see ``eqsearch runtime probe``).

    Args:
        key: where and how it was measured.
        cells: one per measured (role, form, bits, storage).
    """

    key: MeasurementKey
    cells: tuple[ProbeCell, ...]

    def __post_init__(self) -> None:
        cells = tuple(self.cells)
        if not cells:
            raise InputError("a KernelTable needs at least one measured cell")
        object.__setattr__(self, "cells", cells)
        index: dict[tuple[str, str, int, int, str], ProbeCell] = {}
        for cell in cells:
            index[(cell.role, cell.form, cell.w_bits, cell.a_bits, cell.storage)] = cell
        object.__setattr__(self, "_index", index)

    @property
    def runtime(self) -> str:
        """The runtime probed."""
        return self.key.runtime

    def cell(
        self, role: str, form: QuantForm | str, w_bits: int, a_bits: int, storage: str = "int8"
    ) -> ProbeCell | None:
        """The measured cell, or None."""
        index: dict[tuple[str, str, int, int, str], ProbeCell] = self.__dict__["_index"]
        return index.get((role, str(form), w_bits, a_bits, storage))

    def integer(
        self, role: str, form: QuantForm | str, w_bits: int, a_bits: int, storage: str = "int8"
    ) -> bool | None:
        """Whether the layer runs as an integer kernel; a pair the probe did not measure
        counts as integer when both of its operands did (each with the other at 8 bits).
        None: nothing measured for it."""
        if w_bits == FULL_PRECISION_BITS:
            return False
        cell = self.cell(role, form, w_bits, a_bits, storage)
        if cell is not None:
            return cell.integer
        weights = self.cell(role, form, w_bits, FULL_BITS, storage)
        inputs = self.cell(role, form, FULL_BITS, a_bits, "int8")
        if weights is None or inputs is None:
            return None
        return weights.integer and inputs.integer

    def class_label(self, role: str, form: QuantForm | str, w_bits: int, a_bits: int) -> str:
        """The kernel class of a choice: choices with one label run the same kernels (the
        form, integer or float, and whether an integer Clip keeps a grid below 8 bits)."""
        if w_bits == FULL_PRECISION_BITS:
            return "fp32"
        integer = self.integer(role, form, w_bits, a_bits)
        kernel = "unknown" if integer is None else ("int" if integer else "float")
        clip = "clip" if a_bits < FULL_BITS else "full"
        return f"{form}/{kernel}/{clip}"

    def covers(
        self, w_bits: Sequence[int], a_bits: Sequence[int], forms: Sequence[QuantForm]
    ) -> bool:
        """Whether every weight and activation bit width of ``forms`` was measured (each with
        the other operand at 8 bits), for every role measured."""
        roles = {cell.role for cell in self.cells}
        wanted = [(w, FULL_BITS) for w in w_bits if w <= FULL_BITS]
        wanted += [(FULL_BITS, a) for a in a_bits if a <= FULL_BITS]
        return all(
            self.cell(role, form, w, a) is not None
            for role in roles
            for form in forms
            for w, a in wanted
        )

    def integer_forms(
        self, roles: Iterable[str] = ("dense", "depthwise", "pointwise")
    ) -> tuple[QuantForm, ...]:
        """Forms in which every measured choice of ``roles`` ran as an integer kernel (int8
        storage): the forms a ``--target`` of this runtime allows."""
        wanted = set(roles)
        forms: dict[str, bool] = {}
        for cell in self.cells:
            if cell.role in wanted and cell.storage == "int8":
                forms[cell.form] = forms.get(cell.form, True) and cell.integer
        return tuple(QuantForm.parse(form) for form, ok in forms.items() if ok)

    def int4_integer(self, role: str) -> bool:
        """Whether any INT4-stored choice of ``role`` ran as an integer kernel."""
        return any(
            cell.integer for cell in self.cells if cell.role == role and cell.storage == "int4"
        )

    def summary(self) -> list[dict[str, Any]]:
        """One row per (kind, role, form, storage): the integer and float bit pairs, the
        kernels seen and the median speed-up over FP32."""
        groups: dict[tuple[str, str, str], list[ProbeCell]] = {}
        for cell in self.cells:
            groups.setdefault((cell.role, cell.form, cell.storage), []).append(cell)
        rows = []
        for (role, form, storage), cells in groups.items():
            integer = [c for c in cells if c.integer]
            floats = [c for c in cells if not c.integer]
            speedups = sorted(c.speedup for c in cells)
            rows.append(
                {
                    "kind": KIND_OF_ROLE[role],
                    "role": role,
                    "form": form,
                    "storage": storage,
                    "integer": _pairs(integer),
                    "float": _pairs(floats),
                    "kernels": ", ".join(sorted({c.kernel for c in cells})),
                    "vs_fp32": speedups[len(speedups) // 2],
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``format`` ``eqsearch-runtime-probe``)."""
        return {
            "format": PROBE_FORMAT,
            "version": PROBE_VERSION,
            "key": self.key.to_dict(),
            "cells": [
                [
                    *(c.role, c.form, c.w_bits, c.a_bits, c.storage, c.kernel, c.integer),
                    *(round(c.layer_us, 3), round(c.fp32_us, 3)),
                ]
                for c in self.cells
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the probe file") -> KernelTable:
        """Inverse of :meth:`to_dict` (InputError naming ``source`` when it is not one)."""
        if not isinstance(data, Mapping) or data.get("format") != PROBE_FORMAT:
            raise InputError(f"{source} is not an eqsearch runtime probe")
        if data.get("version") != PROBE_VERSION:
            raise InputError(f"{source}: probe format version {data.get('version')!r} is unknown")
        try:
            key = MeasurementKey.from_dict(data["key"])
            cells = tuple(_cell(row) for row in data["cells"])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{source} is damaged ({error})") from None
        return cls(key, cells)


def save_probe(table: KernelTable, path: str | Path) -> Path:
    """Write a probe atomically as JSON."""
    import json

    from eqsearch.files import atomic_write_text

    return atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")


def load_probe(path: str | Path) -> KernelTable:
    """Read a probe written by :func:`save_probe` (InputError when it is not one)."""
    from eqsearch.files import read_json

    return KernelTable.from_dict(read_json(path, what="runtime probe"), source=str(path))


def _cell(row: Sequence[Any]) -> ProbeCell:
    role, form, w_bits, a_bits, storage, kernel, integer, layer_us, fp32_us = row
    return ProbeCell(
        str(role),
        str(form),
        int(w_bits),
        int(a_bits),
        str(storage),
        str(kernel),
        bool(integer),
        float(layer_us),
        float(fp32_us),
    )


def _pairs(cells: Sequence[ProbeCell]) -> str:
    """``W/A`` pairs compactly: ``-`` for none, ``N pairs`` when many."""
    if not cells:
        return "-"
    pairs = sorted({(c.w_bits, c.a_bits) for c in cells})
    if len(pairs) <= 4:
        return " ".join(f"{w}/{a}" for w, a in pairs)
    weights = sorted({w for w, _ in pairs})
    inputs = sorted({a for _, a in pairs})
    return f"{len(pairs)} pairs (W {weights[0]}-{weights[-1]}, A {inputs[0]}-{inputs[-1]})"
