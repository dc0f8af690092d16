"""Checkpoint files: tensors and JSON-able values only, written atomically, loaded safely."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from eqsearch.space import READABLE_VERSIONS, ElasticSpace
from supernet.elastic import Supernet, rebuild_supernet

FORMAT_NAME = "eqsearch-supernet"
FORMAT_VERSION = 1
"""The version of a checkpoint of a fixed architecture; a joint space's is written as 2."""


class CheckpointError(ValueError):
    """A file that is not a loadable eqsearch checkpoint (one clear line, never executed)."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_supernet(path: str | Path, supernet: Supernet, **fields: Any) -> None:
    """Write ``supernet`` (architecture, space, weights) plus ``fields`` atomically.

    ``fields`` must be tensors or JSON-able values (dicts, lists, numbers, strings): e.g.
    ``kind``, ``data``, ``train_config``, ``history``, ``epoch``, ``optimizer``.
    """
    payload = {
        "format": FORMAT_NAME,
        "version": supernet.space.format_version,
        "kind": "supernet",
        "build_info": supernet.build_info,
        "space": supernet.space.to_dict(),
        "state_dict": supernet.state_dict(),
    }
    payload.update(fields)
    atomic_save(payload, path)


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an eqsearch checkpoint; another
            format version; or a pickle that would need to run code (refused, never executed).
    """
    location = Path(path)
    if not location.is_file():
        raise CheckpointError(f"checkpoint not found: {location}")
    try:
        payload = torch.load(location, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refusing {location}: it is a pickle that needs code to load "
            "(not an eqsearch checkpoint); nothing in it was executed"
        ) from None
    except Exception as error:  # torch.load raises many types for files it cannot parse
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise CheckpointError(
            f"{location} is truncated or not a checkpoint file ({first_line})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{location} is not an eqsearch checkpoint")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{location} has checkpoint format version {version}; this eqsearch reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    for key in ("build_info", "space", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{location} lacks its {key!r} entry")
    return payload


def load_supernet(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[Supernet, dict[str, Any]]:
    """Rebuild the supernet a checkpoint describes and load its weights.

    Returns ``(supernet, checkpoint)``; the supernet is in eval mode, full precision active.
    """
    payload = load_checkpoint(path, map_location=map_location)
    try:
        supernet = rebuild_supernet(payload["build_info"])
        stored_space = ElasticSpace.from_dict(payload["space"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path} has a malformed build description ({error})") from None
    if stored_space != supernet.space:
        raise CheckpointError(
            f"{path}: the stored space differs from the one its architecture builds"
        )
    try:
        supernet.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the architecture ({error})") from None
    supernet.to(map_location)
    supernet.eval()
    return supernet, payload
