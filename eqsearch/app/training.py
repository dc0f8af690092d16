"""A supernet trained into a run directory: settings from a file and the line, or a run resumed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.errors import InputError

if TYPE_CHECKING:
    from supernet.training.config import TrainConfig
    from supernet.training.tracking import RunTracker

TRAIN_KEYS: dict[str, str] = {
    "model": "model",
    "dataset": "dataset",
    "data_root": "data_root",
    "image_size": "image_size",
    "transforms": "transforms",
    "quantizer": "quantizer",
    "w_choices": "w_bits",
    "a_choices": "a_bits",
    "granularity": "granularities",
    "w_symmetry": "w_symmetries",
    "a_symmetry": "a_symmetries",
    "first_last": "first_last",
    "epochs": "epochs",
    "fp_epochs": "fp_epochs",
    "init": "init",
    "init_skip_head": "init_skip_head",
    "pretrained": "pretrained",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "optimizer": "optimizer",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "warmup_epochs": "warmup_epochs",
    "lr_schedule": "lr_schedule",
    "lr_step_epochs": "lr_step_epochs",
    "lr_gamma": "lr_gamma",
    "start_eval": "start_eval",
    "schedule": "schedule",
    "form_draw": "forms",
    "guidance": "guidance",
    "gpg_lambda": "gpg_weight",
    "label_smoothing": "label_smoothing",
    "random_subnets": "random_subnets",
    "wdr_skew": "wdr_skew_weight",
    "wdr_kurtosis": "wdr_kurtosis_weight",
    "target_kurtosis": "target_kurtosis",
    "quant_init_images": "quant_init_images",
    "calib_images": "bn_images",
    "holdout": "holdout",
    "seed": "seed",
    "device": "device",
    "workers": "workers",
    "amp": "amp",
    "compile": "compile",
}
"""Each setting of a run by its name on the command line and in a settings file (the flag
``--w-choices`` is the key ``w_choices``) → the :class:`TrainConfig` field it sets."""


@dataclass(frozen=True)
class TrainRequest:
    """A run to train (see :func:`train_run`).

    Args:
        out: the run directory (``supernet.pt``, ``fp.pt``, ``train_log.jsonl``).
        settings: settings by their keys (:data:`TRAIN_KEYS`); they override ``config``'s.
        config: a settings file, JSON or YAML, keyed as ``settings`` are.
        resume: continue the run stored in ``out`` with its stored settings.
        force: start a new run over an eqsearch train run in ``out``.
        log: where the per-epoch log goes besides ``train_log.jsonl``: ``tensorboard``,
            ``mlflow`` or both, comma-separated.
        progress: show progress bars; ``debug``: show the process group's own log lines.
    """

    out: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    config: str | None = None
    resume: bool = False
    force: bool = False
    log: str | None = None
    progress: bool = True
    debug: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(TRAIN_KEYS))
        if unknown:
            raise InputError(
                f"unknown train setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(TRAIN_KEYS))}",
                field="settings",
            )
        if self.force and self.resume:
            raise InputError(
                "resume continues the run in out and {field} replaces it; give one", field="force"
            )


@dataclass(frozen=True)
class TrainOutcome:
    """How a run ended.

    Attributes:
        config: the run's settings.
        history: its log entries (empty on the ranks that do not write).
        checkpoint: the checkpoint written (None on those ranks, or when ``failed``).
        failed: why training stopped (the loss diverged), "" when it finished.
    """

    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    failed: str = ""


def read_train_settings(path: str | Path) -> TrainConfig:
    """A settings file, JSON or YAML, keyed as :data:`TRAIN_KEYS` (the flags' names); the
    older keys (the :class:`TrainConfig` fields, ``w_bits`` for ``w_choices``) are read with
    one warning, except in a file that :meth:`TrainConfig.to_json` wrote (it holds ``space``).

    Raises:
        InputError: naming the file and the setting.
    """
    from eqsearch.settings_files import keys_as_fields, read_settings
    from supernet.training.config import TrainConfig

    data = read_settings(path, limit=1 << 20, what="train config")
    if not isinstance(data, dict):
        raise InputError(f"train config {path} must hold a JSON object or a YAML mapping")
    stored = isinstance(data.get("space"), dict)
    values = keys_as_fields(data, TRAIN_KEYS, what=f"train config {path}", quiet=stored)
    try:
        return TrainConfig.from_dict(values, source="this file")
    except (TypeError, ValueError) as error:
        raise InputError(f"train config {path}: {error}") from None


def train_config(request: TrainRequest) -> TrainConfig:
    """The run's settings: the stored ones of a resumed run (only ``device`` may change), or
    the settings file's with the request's settings over them.

    Raises:
        InputError: a resumed run given other settings (named by their keys), a bad file.
    """
    from dataclasses import replace

    from supernet.training.config import TrainConfig

    overrides = {TRAIN_KEYS[key]: value for key, value in request.settings.items()}
    if request.resume:
        from supernet.files.checkpoint import load_checkpoint
        from supernet.training.run_files import resumable_checkpoint, stored_train_config

        path = resumable_checkpoint(request.out)
        config = stored_train_config(load_checkpoint(path), path)
        changed = sorted(
            key
            for key, name in TRAIN_KEYS.items()
            if key in request.settings
            and key != "device"
            and overrides[name] != getattr(config, name)
        )
        if changed:
            raise InputError(
                f"--resume continues {request.out} with its stored settings; drop "
                f"{', '.join('--' + key.replace('_', '-') for key in changed)}"
            )
        return replace(config, device=overrides.get("device", config.device))
    base = read_train_settings(request.config) if request.config else TrainConfig()
    return replace(base, **overrides)


def train_run(request: TrainRequest) -> TrainOutcome:
    """Train the request's run: the output and the log backends are checked before any
    work, the run directory is held by the main process for the run, a torchrun launch
    joins its process group, and the main process logs each epoch to the trackers.

    Raises:
        InputError: bad settings, an output that may not be written, a missing tracker
            package, peers that do not join.
    """
    from contextlib import nullcontext

    from eqsearch.files import check_output_directory
    from eqsearch.locks import hold_directory
    from supernet.training.tracking import check_log_text

    backends = check_log_text(request.log)  # a missing package is named before any work
    check_output_directory(request.out)
    config = train_config(request)
    main_process = is_main_process()
    # One run per directory: the main process holds it (the other ranks write nothing).
    with hold_directory(request.out) if main_process else nullcontext():
        if request.force:
            from supernet.training.run_files import previous_run_files

            previous_run_files(request.out)  # refused before any work when not train's
        distributed = start_distributed(config.device, debug=request.debug)
        tracker = _tracker(backends, request, config) if main_process else None
        try:
            return _train(request, config, tracker, shown=main_process or not distributed)
        finally:
            if distributed:
                import torch.distributed

                torch.distributed.destroy_process_group()


def _train(
    request: TrainRequest, config: TrainConfig, tracker: RunTracker | None, *, shown: bool
) -> TrainOutcome:
    """The training itself, its epochs logged to ``tracker`` (closed at the end)."""
    from supernet.training.divergence import TrainingDiverged
    from supernet.training.loop import train_supernet

    failed = True
    try:
        result = train_supernet(
            config,
            request.out,
            resume=request.resume,
            progress=request.progress,
            force=request.force,
            on_epoch=None if tracker is None else lambda report: tracker.log(report.entry),
        )
        failed = False
    except TrainingDiverged as error:
        return TrainOutcome(config, failed=str(error))
    finally:
        if tracker is not None:
            if not failed:
                tracker.log_all(result.history)  # the full-precision epochs among them
            tracker.close(failed=failed)
    history = result.history if shown else []
    return TrainOutcome(config, history, result.checkpoint)


def start_distributed(device_name: str, *, debug: bool = False) -> bool:
    """Join the torchrun process group when launched by torchrun with several processes.

    The launch's variables are checked first (see ``eqsearch.launcher``); the device is
    resolved (``cuda:<LOCAL_RANK>``) before the backend is chosen from it: NCCL for CUDA, gloo
    for the CPU. Waiting for the peers is bounded (``EQSEARCH_RENDEZVOUS_TIMEOUT``, 300 s by
    default); c10d's own log lines are shown only with ``debug``.

    Raises:
        InputError: the peers did not join in time.
    """
    from datetime import timedelta

    from eqsearch.launcher import (
        check_rendezvous,
        launch_environment,
        native_stderr_captured,
        process_group_backend,
        rendezvous_seconds,
    )

    rank, world = launch_environment()
    if world <= 1:
        return False
    check_rendezvous()
    seconds = rendezvous_seconds()
    from supernet.devices import resolve_device

    backend = process_group_backend(resolve_device(device_name).type)
    import torch.distributed

    if not torch.distributed.is_initialized():
        try:
            with native_stderr_captured(enabled=not debug):
                torch.distributed.init_process_group(
                    backend=backend, timeout=timedelta(seconds=seconds)
                )
        except Exception as error:  # the store and the backends raise several types
            first = next((line for line in str(error).splitlines() if line.strip()), "")
            raise InputError(
                f"rank {rank} of {world} could not join its peers within {seconds:g} s "
                f"({(first.strip() or type(error).__name__)[:160]}); "
                f"are all {world} processes started?"
            ) from None
    return True


def _tracker(
    backends: tuple[str, ...], request: TrainRequest, config: TrainConfig
) -> RunTracker | None:
    """The TensorBoard / MLflow tracker of a run (None for the JSONL log alone)."""
    if set(backends) <= {"jsonl"}:
        return None
    from supernet.training.run_files import LOG_NAME
    from supernet.training.tracking import RunTracker, logged_keys

    skip = logged_keys(Path(request.out) / LOG_NAME) if request.resume else set()
    return RunTracker(backends, request.out, config.to_dict(), skip=skip, resume=request.resume)


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not launched by torchrun)."""
    from eqsearch.launcher import launch_environment

    return launch_environment()[0] == 0
