"""A search's result: a Pareto front of configs as a table, JSON, CSV, plot and hypervolume."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.files import (
    FileFormat,
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    read_json,
)
from eqsearch.space import JOINT_SPACE_VERSION, ConfigBatch, ElasticSpace, SubnetConfig

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FORMAT_NAME = "eqsearch-pareto"
FORMAT_VERSION = 1
"""The version of a front of a space without architecture genes; a joint space's front is
written as ``JOINT_SPACE_VERSION`` (2), and both are read."""
READABLE_VERSIONS = (FORMAT_VERSION, JOINT_SPACE_VERSION)
PARETO_FILE = FileFormat(
    FORMAT_NAME, READABLE_VERSIONS, "an eqsearch Pareto front file", "Pareto front"
)
"""Format versions :meth:`ParetoFront.from_json` reads."""
FRONT_FILES = ("pareto.json", "pareto.csv", "pareto.png")
"""The files of a front written by :meth:`ParetoFront.write`, the JSON first."""
FILES_KEY = "files"
MEASURED_COLUMN = "measured_accuracy"


def non_dominated(minimised: npt.ArrayLike) -> BoolArray:
    """Rows of a minimisation matrix that no other row dominates (ties all kept).

    moocore's dimension sweep (O(n log n) up to 3 objectives, Kung et al. beyond): the
    search calls this on everything it evaluated, tens of thousands of rows.
    """
    import moocore  # pymoo's dependency, compiled

    points = np.asarray(minimised, dtype=np.float64)
    if points.ndim != 2:
        raise InputError(f"expected an (n, m) array of objective values; got shape {points.shape}")
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    result: BoolArray = np.asarray(moocore.is_nondominated(points, keep_weakly=True), dtype=bool)
    return result


def hypervolume(minimised: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Hypervolume dominated by ``minimised`` points up to ``reference`` (all minimised).

    Points not strictly better than the reference in every objective add nothing.
    """
    import moocore

    points = np.asarray(minimised, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if points.ndim != 2 or points.shape[1] != ref.shape[0]:
        raise InputError(
            f"the reference point has {ref.shape[0]} values; the points have shape {points.shape}"
        )
    points = points[(points < ref).all(axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    return float(moocore.hypervolume(points, ref=ref))


@dataclass(frozen=True)
class FrontObjective:
    """Name, direction (``"max"``/``"min"``) and axis label of an objective of a front."""

    name: str
    direction: str
    label: str

    @property
    def sign(self) -> float:
        """+1 minimised, -1 maximised."""
        return 1.0 if self.direction == "min" else -1.0


@dataclass(frozen=True)
class ParetoFront:
    """Feasible, non-dominated configs of a search, best first by the first objective.

    Args:
        batch: the configs.
        objectives: the objectives' names, directions and labels.
        values: ``(n, m)`` objective values as reported (accuracy in percent, ...).
        evaluated: ``(k, m)`` objective values of every config the search evaluated (for plots).
        evaluated_feasible: which of those met the constraints.
        reference: uniform-bit configs' objective values by label (``"W4A4"``), for plots.
        measured: accuracy measured on the supernet per config (NaN where not verified).
        info: JSON-able facts about the search (engine, seed, constraints, ...).
        extra: more columns by name, one value (or NaN) per config: what the search's
            models predict besides its objectives (``latency_ms``) and what was measured
            (``measured_latency_ms``).
    """

    batch: ConfigBatch
    objectives: tuple[FrontObjective, ...]
    values: FloatArray
    evaluated: FloatArray | None = None
    evaluated_feasible: BoolArray | None = None
    reference: Mapping[str, FloatArray] = field(default_factory=dict)
    measured: FloatArray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64).reshape(len(self.batch), -1)
        if values.shape[1] != len(self.objectives):
            raise InputError(
                f"ParetoFront.values has {values.shape[1]} columns for "
                f"{len(self.objectives)} objectives"
            )
        object.__setattr__(self, "values", values)
        if self.measured is not None:
            measured = np.asarray(self.measured, dtype=np.float64).reshape(-1)
            if measured.shape != (len(self.batch),):
                raise InputError("ParetoFront.measured needs one value (or NaN) per config")
            object.__setattr__(self, "measured", measured)
        extra: dict[str, FloatArray] = {}
        for name, column in self.extra.items():
            flat: FloatArray = np.asarray(column, dtype=np.float64).reshape(-1)
            if flat.shape != (len(self.batch),):
                raise InputError(f"ParetoFront.extra[{name!r}] needs one value per config")
            extra[str(name)] = flat
        object.__setattr__(self, "extra", extra)

    @property
    def space(self) -> ElasticSpace:
        """The space of the configs."""
        return self.batch.space

    @property
    def configs(self) -> list[SubnetConfig]:
        """The configs, best first by the first objective."""
        return self.batch.configs()

    @property
    def objective_names(self) -> tuple[str, ...]:
        """Names of the objectives, in column order."""
        return tuple(o.name for o in self.objectives)

    def __len__(self) -> int:
        return len(self.batch)

    def column(self, name: str) -> FloatArray:
        """Values of one objective."""
        try:
            index = self.objective_names.index(name)
        except ValueError:
            raise InputError(
                f"no objective {name!r}; the front has {', '.join(self.objective_names)}"
            ) from None
        column: FloatArray = self.values[:, index]
        return column

    def minimised(self) -> FloatArray:
        """Objective values signed so that lower is better."""
        signs = np.asarray([o.sign for o in self.objectives])
        result: FloatArray = self.values * signs
        return result

    def hypervolume(self, reference: Sequence[float] | npt.ArrayLike) -> float:
        """Hypervolume of the front up to ``reference``, given in the objectives' own units.

        For ``accuracy`` (max) and ``bitops`` (min), ``reference=(0, 1e9)`` measures the area
        between the front and (0 % accuracy, 10⁹ BitOPs).
        """
        signs = np.asarray([o.sign for o in self.objectives])
        ref = np.asarray(reference, dtype=np.float64).reshape(-1)
        if ref.shape != signs.shape:
            raise InputError(f"the reference point needs {len(signs)} values; got {ref.size}")
        return hypervolume(self.minimised(), ref * signs)

    def spread(self, k: int) -> list[int]:
        """Indices of ``k`` configs spread evenly along the front (all when k >= len)."""
        if k < 1:
            raise InputError(f"k must be >= 1; got {k}")
        if k >= len(self):
            return list(range(len(self)))
        return sorted({round(float(i)) for i in np.linspace(0, len(self) - 1, k)})

    def with_measured(self, indices: Sequence[int], accuracies: npt.ArrayLike) -> ParetoFront:
        """A copy with measured accuracies for the configs at ``indices``."""
        measured = np.full(len(self), np.nan) if self.measured is None else self.measured.copy()
        measured[np.asarray(indices, dtype=np.int64)] = np.asarray(accuracies, dtype=np.float64)
        return replace(self, measured=measured)

    def with_column(
        self, name: str, values: npt.ArrayLike, indices: Sequence[int] | None = None
    ) -> ParetoFront:
        """A copy with an extra column: ``values`` for every config, or for the configs at
        ``indices`` (NaN elsewhere)."""
        column = np.asarray(self.extra.get(name, np.full(len(self), np.nan)), dtype=np.float64)
        column = column.copy()
        if indices is None:
            column[:] = np.asarray(values, dtype=np.float64).reshape(-1)
        else:
            column[np.asarray(indices, dtype=np.int64)] = np.asarray(values, dtype=np.float64)
        return replace(self, extra={**self.extra, name: column})

    # -- tables and files ------------------------------------------------------------------

    def cost_columns(self) -> dict[str, FloatArray]:
        """Every cost model of every config (see ``costs.cost_table``)."""
        return costs.cost_table(self.space, self.batch)

    def to_frame(self) -> pd.DataFrame:
        """One row per config: objectives, average bits, W-Comp, A-Comp, BitOPs, size, form and
        (where verified) the measured accuracy."""
        import pandas as pd

        columns: dict[str, Any] = {name: self.column(name) for name in self.objective_names}
        for name, values in self.cost_columns().items():
            columns.setdefault(name, values)
        columns["form"] = [str(c.uniform_form or "mixed") for c in self.configs]
        if self.measured is not None:
            columns[MEASURED_COLUMN] = self.measured
        for name, values in self.extra.items():
            columns[name] = values
        return pd.DataFrame(columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``{"configs": [{"config": ..., <metrics>}, ...], ...}``."""
        frame = self.to_frame()
        records = []
        for row, config in zip(frame.to_dict(orient="records"), self.configs, strict=True):
            entry: dict[str, Any] = {"config": config.to_dict()}
            for key, value in row.items():
                if isinstance(value, float) and not np.isfinite(value):
                    continue
                entry[str(key)] = value.item() if isinstance(value, np.generic) else value
            records.append(entry)
        return {
            "format": FORMAT_NAME,
            "version": self.space.format_version,
            "objectives": [
                {"name": o.name, "direction": o.direction, "label": o.label}
                for o in self.objectives
            ],
            "space_fingerprint": self.space.fingerprint,
            "info": dict(self.info),
            **({"extra_columns": sorted(self.extra)} if self.extra else {}),
            "reference": {label: list(map(float, v)) for label, v in self.reference.items()},
            "configs": records,
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON atomically; ``eqsearch eval --subnet path#i`` reads it."""
        return atomic_write_text(path, self._json_text())

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (atomically)."""
        return atomic_write_text(path, self._csv_text())

    def _json_text(self, files: Mapping[str, str] | None = None) -> str:
        payload = self.to_dict()
        if files is not None:
            payload[FILES_KEY] = dict(files)
        return json.dumps(payload, indent=2) + "\n"

    def _csv_text(self) -> str:
        text: str = self.to_frame().to_csv(index_label="index")
        return text

    def write(self, directory: str | Path) -> list[Path]:
        """Write ``pareto.json``, ``pareto.csv`` and ``pareto.png`` into ``directory`` as one set.

        The three files are written in full and fsync'd under temporary names first (a full
        disk or an interrupt then leaves the previous set as it was). Then the previous
        ``pareto.json`` is removed, the CSV and the PNG are renamed into place, and the new
        ``pareto.json`` comes last: a directory never holds a ``pareto.json`` beside files of
        another run. The JSON records the SHA-256 of its CSV and PNG (:func:`read_front`
        checks them).

        Returns:
            the paths of the JSON, CSV and PNG files.
        """
        from contextlib import ExitStack

        out = Path(directory)
        json_path, csv_path, png_path = (out / name for name in FRONT_FILES)
        csv_bytes = self._csv_text().encode("utf-8")
        png_bytes = self._plot_png()
        files = {
            csv_path.name: hashlib.sha256(csv_bytes).hexdigest(),
            png_path.name: hashlib.sha256(png_bytes).hexdigest(),
        }
        json_bytes = self._json_text(files).encode("utf-8")
        with ExitStack() as stack:
            # entered JSON first so that it is renamed last, after the CSV and the PNG
            streams = [
                (stack.enter_context(atomic_writer(path)), data)
                for path, data in (
                    (json_path, json_bytes),
                    (png_path, png_bytes),
                    (csv_path, csv_bytes),
                )
            ]
            for stream, data in streams:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            json_path.unlink(missing_ok=True)
        return [json_path, csv_path, png_path]

    @classmethod
    def from_json(cls, path: str | Path, space: ElasticSpace) -> ParetoFront:
        """Read a front written by :meth:`to_json` or :meth:`write`.

        Raises:
            InputError: the file is not an eqsearch Pareto front of a version this eqsearch
                reads, was searched on another space than ``space``, or is malformed; or a
                config is not in ``space``.
        """
        data = PARETO_FILE.check(read_json(path, what="Pareto front file"), path)
        fingerprint = data.get("space_fingerprint")
        if fingerprint != space.fingerprint:
            raise InputError(
                f"{path} was searched on another space (fingerprint {fingerprint!r}) than this "
                f"supernet's ({space.fingerprint}); search this supernet with eqsearch nsga"
            )
        if data.get("configs") == []:
            raise InputError(f"{path} is not a valid Pareto front file (it lists no configs)")
        try:
            objectives = tuple(
                FrontObjective(str(o["name"]), str(o["direction"]), str(o.get("label", o["name"])))
                for o in data["objectives"]
            )
            entries = data["configs"]
            configs = [SubnetConfig.from_dict(entry["config"]) for entry in entries]
            values = np.asarray(
                [[float(entry[o.name]) for o in objectives] for entry in entries],
                dtype=np.float64,
            ).reshape(len(entries), len(objectives))
            measured = None
            if any(MEASURED_COLUMN in entry for entry in entries):
                measured = np.asarray(
                    [float(entry.get(MEASURED_COLUMN, np.nan)) for entry in entries]
                )
            reference = {
                str(k): np.asarray(v, dtype=np.float64) for k, v in data["reference"].items()
            }
            info = dict(data.get("info", {}))
            extra = {
                str(name): np.asarray([float(entry.get(name, np.nan)) for entry in entries])
                for name in data.get("extra_columns", [])
            }
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise InputError(f"{path} is not a valid Pareto front file ({error})") from None
        try:
            batch = space.batch(configs)
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        return cls(
            batch,
            objectives,
            values,
            reference=reference,
            measured=measured,
            info=info,
            extra=extra,
        )

    def plot(self, path: str | Path, *, x: str | None = None, y: str | None = None) -> Path:
        """Save a PNG: every evaluated config, the front, and the uniform-bit references.

        ``y`` defaults to the first objective and ``x`` to the second (the first when there is
        only one). The file is written atomically.
        """
        return atomic_write_bytes(path, self._plot_png(x=x, y=y))

    def _plot_png(self, *, x: str | None = None, y: str | None = None) -> bytes:
        """The plot of :meth:`plot` as PNG bytes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = self.objective_names
        y_name = y or names[0]
        x_name = x or (names[1] if len(names) > 1 else names[0])
        xi, yi = names.index(x_name), names.index(y_name)
        figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
        if self.evaluated is not None and len(self.evaluated):
            feasible = (
                np.ones(len(self.evaluated), dtype=bool)
                if self.evaluated_feasible is None
                else self.evaluated_feasible
            )
            axes.scatter(
                self.evaluated[~feasible, xi],
                self.evaluated[~feasible, yi],
                s=4,
                color="#d9d9d9",
                label="evaluated, over budget",
                rasterized=True,
            )
            axes.scatter(
                self.evaluated[feasible, xi],
                self.evaluated[feasible, yi],
                s=4,
                color="#9ecae1",
                label="evaluated",
                rasterized=True,
            )
        order = np.argsort(self.values[:, xi], kind="stable")
        axes.plot(
            self.values[order, xi],
            self.values[order, yi],
            "o-",
            color="#d62728",
            markersize=4,
            linewidth=1.2,
            label=f"Pareto front ({len(self)})",
        )
        if self.measured is not None and np.isfinite(self.measured).any():
            seen = np.isfinite(self.measured)
            axes.scatter(
                self.values[seen, xi],
                self.measured[seen],
                marker="x",
                color="black",
                s=30,
                label="measured on the supernet",
                zorder=5,
            )
        for label, point in self.reference.items():
            axes.scatter([point[xi]], [point[yi]], marker="s", color="#2ca02c", s=18, zorder=4)
            axes.annotate(
                label,
                (point[xi], point[yi]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color="#2ca02c",
            )
        if self.reference:
            axes.scatter([], [], marker="s", color="#2ca02c", s=18, label="uniform bits")
        labels = {o.name: o.label for o in self.objectives}
        axes.set_xlabel(labels[x_name])
        axes.set_ylabel(labels[y_name])
        if x_name == "bitops":
            axes.set_xscale("log")
        title = self.info.get("title")
        if title:
            axes.set_title(str(title), fontsize=9)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        return buffer.getvalue()


def read_front(directory: str | Path, space: ElasticSpace) -> ParetoFront:
    """The front in ``directory/pareto.json``, after checking that its CSV and PNG beside it
    (where present) are the ones written with it.

    Raises:
        InputError: see :meth:`ParetoFront.from_json`, or a file of the set belongs to another
            run (an interrupted write, or a file edited since).
    """
    out = Path(directory)
    json_path = out / FRONT_FILES[0]
    front = ParetoFront.from_json(json_path, space)
    data = read_json(json_path, what="Pareto front file")
    for name, digest in dict(data.get(FILES_KEY) or {}).items():
        sibling = out / str(name)
        if not sibling.is_file():
            continue
        if hashlib.sha256(sibling.read_bytes()).hexdigest() != digest:
            raise InputError(
                f"{sibling} is not the file written with {json_path} (an interrupted write or "
                "an edit); rerun eqsearch nsga to write the set again"
            )
    return front
