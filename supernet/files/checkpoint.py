"""Checkpoint files: tensors and JSON-able values only, written atomically, loaded safely."""

from __future__ import annotations

import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from eqsearch.errors import InputError
from eqsearch.files import atomic_torch_save
from eqsearch.space import READABLE_VERSIONS, ElasticSpace
from supernet.devices import resolve_device
from supernet.networks.elastic import Supernet
from supernet.networks.models import check_model_named_by_file
from supernet.networks.rebuild import rebuild_supernet

FORMAT_NAME = "eqsearch-supernet"
FORMAT_VERSION = 1
"""The version of a checkpoint of a fixed architecture; a joint space's is written as 2."""


class CheckpointError(InputError):
    """A file that is not a loadable eqsearch checkpoint (one clear line, never executed)."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (see ``eqsearch.files.atomic_torch_save``)."""
    atomic_torch_save(obj, path)


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


_CODE_OPCODES = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"}
)


def _pickle_needs_code(location: Path) -> bool:
    """Whether a file torch refused is a pickle that imports or calls something (read with
    ``pickletools``, which never executes), rather than bytes that are no pickle at all."""
    try:
        if zipfile.is_zipfile(location):
            with zipfile.ZipFile(location) as archive:
                names = [name for name in archive.namelist() if name.endswith("data.pkl")]
                if not names:
                    return False
                data = archive.read(names[0])
        else:
            with location.open("rb") as stream:
                data = stream.read(1 << 24)
        opcodes = {opcode.name for opcode, _, _ in pickletools.genops(data)}
    except Exception:  # not a pickle: pickletools raises several types
        return False
    return bool(opcodes & _CODE_OPCODES)


def safe_torch_load(
    path: str | Path, *, what: str = "checkpoint", map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(weights_only=True)`` with every failure as one :class:`CheckpointError` line.

    A pickle that would need code to load is refused and never executed; torch's advice to
    retry with ``weights_only=False`` is never passed on. The file is loaded on the CPU unless
    ``map_location`` says otherwise (check the device first: see ``supernet.devices``).

    Raises:
        CheckpointError: missing, not a regular file, truncated or corrupt, or unsafe.
    """
    location = Path(path)
    if not location.is_file():
        raise CheckpointError(f"{what} not found: {location}")
    try:
        with warnings.catch_warnings():
            # torch warns about a protocol-4 pickle (any pickle.dumps) before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(location, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if _pickle_needs_code(location):
            raise CheckpointError(
                f"refusing {location}: it is a pickle that needs code to load (not an "
                f"eqsearch {what}); nothing in it was executed"
            ) from None
        raise CheckpointError(
            f"{location} is truncated or not a {what} file (not a pickle torch can read)"
        ) from None
    except Exception as error:  # torch.load raises many types for files it cannot parse
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        useful = [line for line in lines if "weights_only" not in line]
        reason = useful[0] if useful else type(error).__name__
        raise CheckpointError(
            f"{location} is truncated or not a {what} file ({reason[:200]})"
        ) from None


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an eqsearch checkpoint; another
            format version; or a pickle that would need to run code (refused, never executed).
    """
    location = Path(path)
    payload = safe_torch_load(location, map_location=map_location)
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
    if not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"{location} has a malformed state_dict entry")
    return payload


def check_finite_weights(state_dict: dict[str, Any], path: str | Path) -> None:
    """Refuse a state dict holding NaN or infinite floating-point values (a diverged run).

    Raises:
        CheckpointError: names the first such tensor.
    """
    for name, tensor in state_dict.items():
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            raise CheckpointError(
                f"{path} holds non-finite weights ({name}); it comes from a diverged run"
            )


def load_supernet(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[Supernet, dict[str, Any]]:
    """Rebuild the supernet a checkpoint describes and load its weights.

    Returns ``(supernet, checkpoint)``; the supernet is in eval mode, full precision active.

    Raises:
        CheckpointError: see :func:`load_checkpoint`, or weights that do not fit or are not
            finite.
        InputError: ``map_location`` is not a device of this machine (checked first).
    """
    device = resolve_device(str(map_location))
    payload = load_checkpoint(path)
    build_info = payload["build_info"]
    if not isinstance(build_info, dict) or "model" not in build_info:
        raise CheckpointError(
            f"{path} names no model to rebuild (a supernet made by to_supernet without "
            "build_info); pass to_supernet(..., build_info={'model': 'package.module:factory', "
            "'num_classes': ..., 'in_channels': ..., 'image_size': ...}) when saving"
        )
    check_model_named_by_file(build_info["model"], source=str(path))
    try:
        supernet = rebuild_supernet(build_info)
        stored_space = ElasticSpace.from_dict(payload["space"])
    except InputError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise CheckpointError(f"{path} has a malformed build description ({error})") from None
    if stored_space != supernet.space:
        raise CheckpointError(
            f"{path}: the stored space differs from the one its architecture builds"
        )
    try:
        supernet.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: weights do not fit the architecture ({first})") from None
    check_finite_weights(payload["state_dict"], path)
    supernet.to(device)
    supernet.eval()
    return supernet, payload
