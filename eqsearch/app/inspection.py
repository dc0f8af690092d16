"""What an eqsearch file holds: a checkpoint, a Pareto front or an exported ONNX model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import KINDS, read_json, sniff_kind

INSPECTED_KINDS = ("checkpoint", "pareto", "onnx")
"""The kinds of file :func:`inspect_file` describes."""

FRONT_ROWS = 10
"""Configs of a Pareto front shown in its table (spread over the front, ends included)."""

_FRONT_COLUMNS = ("w_bits", "a_bits", "bitops", "size_bytes", "macs", "latency_ms", "form")


@dataclass(frozen=True)
class Inspection:
    """A file's contents in brief.

    Attributes:
        path: the file, as given.
        kind: ``checkpoint``, ``pareto`` or ``onnx``.
        summary: JSON-able facts, by name (what ``eqsearch inspect --json`` prints).
        rows: a small table (a front's configs, a checkpoint's log), one dict per row.
    """

    path: str
    kind: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return {"path": self.path, "kind": self.kind, "summary": self.summary, "rows": self.rows}


def inspect_file(path: str | Path) -> Inspection:
    """Describe a ``supernet.pt`` / ``fp.pt`` checkpoint, a ``pareto.json`` or an exported
    ``.onnx`` model, without running anything it holds.

    A checkpoint is read through :func:`supernet.files.checkpoint.load_checkpoint`
    (``torch.load(weights_only=True)``): no model is built, so no model factory it names is
    imported.

    Raises:
        InputError: the file is missing, or is none of those kinds (the message names what it
            looks like), or is damaged.
    """
    location = Path(path)
    if location.is_dir():
        raise InputError(f"{location} is a directory; inspect a file in it")
    if not location.is_file():
        raise InputError(f"file not found: {location}")
    kind = sniff_kind(location)
    if kind == "checkpoint":
        return _checkpoint(location)
    if kind == "pareto":
        return _front(location)
    if kind == "onnx" or location.suffix == ".onnx":
        return _onnx(location)
    looks = f"it looks like {KINDS[kind]}" if kind is not None else "its contents are unknown"
    raise InputError(
        f"{location} is not a checkpoint, a Pareto front (pareto.json) or an ONNX model "
        f"({looks}); eqsearch inspect reads those"
    )


# -- checkpoints ---------------------------------------------------------------------------


def _bits_label(space: Any, open_bits: list[int] | None, pick: Any) -> str:
    """``W8/A8`` for the largest (``pick=max``) or smallest subnet among the open bits."""
    allowed = set(open_bits) if open_bits else None
    w_bits = [b for b in space.w_bits if allowed is None or b in allowed] or list(space.w_bits)
    a_bits = [b for b in space.a_bits if allowed is None or b in allowed] or list(space.a_bits)
    return f"W{pick(w_bits)}/A{pick(a_bits)}"


def _accuracies(space: Any, history: list[Any]) -> dict[str, float]:
    """The latest recorded accuracy of each kind: full precision, the largest and the
    smallest subnet (named by their bits)."""
    found: dict[str, float] = {}
    for entry in history:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if not key.startswith("acc") or isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)):
                continue
            if key == "acc_largest":
                label = f"{_bits_label(space, entry.get('open_bits'), max)} (largest)"
            elif key == "acc_smallest":
                label = f"{_bits_label(space, entry.get('open_bits'), min)} (smallest)"
            elif key == "acc_fp":
                label = "full precision"
            else:
                label = key.removeprefix("acc_")
            found[label] = float(value)
    return found


def _of_type(value: Any, kind: type[Any]) -> Any:
    """``value`` where it is a ``kind`` (a dict or list of a checkpoint), else an empty one."""
    return value if isinstance(value, kind) else kind()


def _checkpoint(location: Path) -> Inspection:
    from eqsearch.space import ElasticSpace
    from supernet.files.checkpoint import load_checkpoint

    payload = load_checkpoint(location)
    try:
        space = ElasticSpace.from_dict(payload["space"])
    except (InputError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"{location} holds a malformed space ({error})") from None
    build = _of_type(payload.get("build_info"), dict)
    history = _of_type(payload.get("history"), list)
    train_config = _of_type(payload.get("train_config"), dict)
    state = payload["state_dict"]
    parameters = sum(int(getattr(value, "numel", lambda: 0)()) for value in state.values())
    kind = str(payload.get("kind", "supernet"))
    summary: dict[str, Any] = {
        "checkpoint": kind,
        "format_version": payload.get("version"),
        "model": build.get("model"),
        "build": build,
        "space": space.describe(),
        "w_bits": list(space.w_bits),
        "a_bits": list(space.a_bits),
        "forms": [str(form) for form in space.forms],
        "layers": space.n_layers,
        "elastic_layers": len(space.elastic_indices),
        "architecture_genes": len(space.genes),
        "space_fingerprint": space.fingerprint,
        "data": payload.get("data"),
        "epochs_trained": payload.get("fp_epoch" if kind == "fp" else "epoch"),
        "epochs_planned": train_config.get("fp_epochs" if kind == "fp" else "epochs"),
        "parameters": parameters,
        "accuracy": _accuracies(space, history),
    }
    rows = [
        {
            key: value
            for key, value in entry.items()
            if isinstance(value, (int, float, str)) and not isinstance(value, bool)
        }
        for entry in history
        if isinstance(entry, dict)
    ]
    return Inspection(str(location), "checkpoint", summary, rows)


# -- Pareto fronts -------------------------------------------------------------------------


def _spread(count: int, shown: int) -> list[int]:
    if count <= shown:
        return list(range(count))
    step = (count - 1) / (shown - 1)
    return sorted({round(index * step) for index in range(shown)})


def _front(location: Path) -> Inspection:
    data = read_json(location, what="Pareto front file")
    try:
        objectives = [dict(objective) for objective in data["objectives"]]
        names = [str(objective["name"]) for objective in objectives]
        entries = list(data["configs"])
        info = dict(data.get("info") or {})
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{location} is not a valid Pareto front file ({error})") from None
    columns = [*names, *(c for c in _FRONT_COLUMNS if c not in names)]
    extra = ["measured_accuracy", *map(str, data.get("extra_columns", []))]
    rows = []
    for index in _spread(len(entries), FRONT_ROWS):
        entry = entries[index]
        if not isinstance(entry, dict):
            raise InputError(f"{location} is not a valid Pareto front file (config {index})")
        row: dict[str, Any] = {"index": index}
        for column in [*columns, *extra]:
            if column in entry and column not in row:
                row[column] = entry[column]
        rows.append(row)
    summary: dict[str, Any] = {
        "objectives": [
            f"{objective['name']} ({objective.get('direction', '?')})" for objective in objectives
        ],
        "configs": len(entries),
        "title": info.get("title"),
        "oracle": info.get("oracle"),
        "engine": info.get("engine"),
        "supernet": info.get("supernet"),
        "predictor": info.get("predictor"),
        "space_fingerprint": data.get("space_fingerprint"),
        "format_version": data.get("version"),
    }
    return Inspection(str(location), "pareto", summary, rows)


# -- ONNX models ---------------------------------------------------------------------------


def _onnx(location: Path) -> Inspection:
    from supernet.deployment.onnx_metadata import describe_onnx

    described = describe_onnx(location)
    metadata = described.pop("metadata")
    bits = metadata.get("eqsearch.bits_per_layer")
    entries = bits if isinstance(bits, list) else []
    rows = [dict(entry) for entry in entries if isinstance(entry, dict)]
    summary = {**described, "metadata": metadata}
    return Inspection(str(location), "onnx", summary, rows)
