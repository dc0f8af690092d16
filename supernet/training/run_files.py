"""The files of a training run in its directory: their names, the stored run a resume
continues, the weights it loads and the log."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text
from supernet.files.checkpoint import check_finite_weights, load_checkpoint
from supernet.networks.elastic import Supernet
from supernet.networks.models import check_model_named_by_file
from supernet.training.config import TrainConfig

CHECKPOINT_NAME = "supernet.pt"
"""The supernet checkpoint, written after every supernet epoch."""
FP_CHECKPOINT_NAME = "fp.pt"
"""The full-precision checkpoint, written after every pretraining epoch."""
LOG_NAME = "train_log.jsonl"
"""The training log: one JSON entry per epoch and phase."""


def write_log(path: Path, history: list[dict[str, Any]]) -> None:
    """Write ``history`` to ``path`` as JSON lines (atomically)."""
    atomic_write_text(path, "".join(json.dumps(entry) + "\n" for entry in history))


def stored_run(
    out: Path, config: TrainConfig, resume: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What a run in ``out`` left: (its supernet checkpoint, its FP checkpoint), each None.

    Without ``resume`` a run directory holding either is refused; with it, the newest is
    returned (a supernet checkpoint wins) after checking its settings equal ``config``. A
    training log that no run in ``out`` wrote is never replaced.
    """
    checkpoint_path = out / CHECKPOINT_NAME
    fp_path = out / FP_CHECKPOINT_NAME
    log_path = out / LOG_NAME
    if log_path.exists() and not checkpoint_path.exists() and not fp_path.exists():
        raise InputError(
            f"{log_path} exists, but {out} holds no run of eqsearch train ({CHECKPOINT_NAME} "
            "or fp.pt); not replacing it: choose another --out"
        )
    if not resume:
        if checkpoint_path.exists():
            raise InputError(
                f"{checkpoint_path} exists; pass --resume to continue it, --force to start "
                "over, or choose another --out"
            )
        if fp_path.exists() and not config.init and config.fp_epochs > 0:
            raise InputError(
                f"{fp_path} holds the pretraining of a run that stopped before its first "
                "supernet epoch; pass --resume to continue from it or choose another --out"
            )
        return None, None
    path = resumable_checkpoint(out)
    stored = load_checkpoint(path)
    stored_config = stored_train_config(stored, path)
    if replace(stored_config, device=config.device) != config:
        raise InputError(
            f"--resume continues {path} with its stored settings; the given settings differ"
        )
    if path == checkpoint_path:
        missing = [key for key in _RESUME_KEYS if key not in stored]
        if missing or stored.get("kind") != "supernet":
            raise InputError(
                f"{path} cannot be resumed: it lacks {', '.join(missing) or 'its kind'} "
                "(it was not written by eqsearch train)"
            )
        return stored, None
    if stored.get("kind") != "fp" or "torch_rng" not in stored:
        raise InputError(f"{path} is not the pretraining checkpoint of an eqsearch train run")
    return None, stored


_RESUME_KEYS = ("optimizer", "scheduler", "torch_rng", "epoch", "train_config")


def previous_run_files(out_dir: str | Path) -> list[Path]:
    """The files of the ``eqsearch train`` run in ``out_dir`` that a new run (``--force``)
    replaces: its checkpoints and its log.

    Raises:
        InputError: a file at a checkpoint's name that ``eqsearch train`` did not write (no
            training settings recorded in it), or a log beside no checkpoint.
    """
    out = Path(out_dir)
    found = [out / name for name in (CHECKPOINT_NAME, FP_CHECKPOINT_NAME) if (out / name).exists()]
    for path in found:
        stored_train_config(load_checkpoint(path), path)
    log = out / LOG_NAME
    if log.exists():
        if not found:
            raise InputError(f"{log} exists, but {out} holds no run of eqsearch train")
        found.append(log)
    return found


def stored_train_config(checkpoint: dict[str, Any], path: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint was trained with.

    Raises:
        InputError: the checkpoint has none or a malformed one.
    """
    data = checkpoint.get("train_config")
    if not isinstance(data, dict):
        raise InputError(f"{path} records no training settings (not written by eqsearch train)")
    if "model" in data:
        check_model_named_by_file(data["model"], source=str(path))
    try:
        return TrainConfig.from_dict(data, source=str(path))
    except (TypeError, ValueError) as error:
        raise InputError(f"{path} records malformed training settings ({error})") from None


def resumable_checkpoint(out_dir: str | Path) -> Path:
    """The checkpoint ``train --resume`` continues in ``out_dir``: ``supernet.pt``, or the
    ``fp.pt`` of a run that stopped before its first supernet epoch.

    Raises:
        InputError: there is neither.
    """
    out = Path(out_dir)
    for name in (CHECKPOINT_NAME, FP_CHECKPOINT_NAME):
        if (out / name).exists():
            return out / name
    raise InputError(f"nothing to resume: {out} holds neither {CHECKPOINT_NAME} nor fp.pt")


def load_stored_weights(supernet: Supernet, stored: dict[str, Any], path: Path | None) -> None:
    """Load a checkpoint's weights, refusing wrong shapes and non-finite values in one line."""
    state = stored["state_dict"]
    try:
        supernet.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: the weights do not fit the architecture ({first})") from None
    check_finite_weights(state, path or "the checkpoint")
