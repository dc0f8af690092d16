"""Experiment tracking of a training run: TensorBoard or MLflow beside the JSONL log."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eqsearch.errors import InputError

LOG_BACKENDS = ("jsonl", "tensorboard", "mlflow")
"""What ``eqsearch train --log`` takes; ``jsonl`` (``train_log.jsonl``) is always written."""

TENSORBOARD_DIR = "tensorboard"
"""The event files' directory inside the run directory."""
MLFLOW_DB = "mlflow.db"
"""MLflow's tracking store inside the run directory (SQLite: MLflow 3 retired plain folders)."""
MLFLOW_ARTIFACTS = "mlflow-artifacts"
MLFLOW_EXPERIMENT = "eqsearch"

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
"""Backend → the module it needs; each is an eqsearch extra of the same name."""

EntryKey = tuple[str, int]
"""A log entry's identity: (phase, epoch)."""


def parse_log_backends(text: str) -> tuple[str, ...]:
    """``"jsonl,tensorboard"`` → the backends named, each once, in the order given.

    Raises:
        InputError: an unknown backend, or none.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in LOG_BACKENDS]
    if unknown or not names:
        raise InputError(f"--log takes {', '.join(LOG_BACKENDS)} (comma-separated); got {text!r}")
    return tuple(dict.fromkeys(names))


def check_backends(backends: Iterable[str]) -> None:
    """Refuse, before any training, a backend whose package is not installed.

    Raises:
        InputError: names the extra to install.
    """
    for name in backends:
        module = _PACKAGES.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise InputError(
                f"--log {name} needs the {module} package: pip install 'eqsearch[{name}]'"
            )


def entry_key(entry: Mapping[str, Any]) -> EntryKey:
    """The (phase, epoch) identity of a training log entry."""
    return str(entry.get("phase", "supernet")), int(entry.get("epoch", 0))


def scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    """The entry's numbers as ``phase/name`` scalars (losses, learning rate, accuracies,
    seconds); the phase and epoch themselves, flags and lists are left out."""
    phase = entry_key(entry)[0]
    return {
        f"{phase}/{name}": float(value)
        for name, value in entry.items()
        if name not in ("phase", "epoch")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def logged_keys(log: Path) -> set[EntryKey]:
    """The entries a run's ``train_log.jsonl`` holds (a resumed run does not log them again)."""
    if not log.is_file():
        return set()
    keys = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            keys.add(entry_key(entry))
    return keys


class RunTracker:
    """Sends each training log entry to TensorBoard and/or MLflow, once.

    Args:
        backends: from :data:`LOG_BACKENDS` (``jsonl`` needs nothing here).
        run_dir: the run directory; event files go to ``tensorboard/``, MLflow's store to
            ``mlflow.db`` in it.
        settings: the run's settings, recorded as TensorBoard text and MLflow parameters.
        skip: entries logged by an earlier invocation (see :func:`logged_keys`).
        resume: continue the run's latest MLflow run instead of starting one; without it,
            TensorBoard event files of a replaced run (``--force``) are removed first.

    The backends start at the first entry sent: a run refused before its first epoch leaves
    no tracking files behind.
    """

    def __init__(
        self,
        backends: Iterable[str],
        run_dir: str | Path,
        settings: Mapping[str, Any],
        *,
        skip: Iterable[EntryKey] = (),
        resume: bool = False,
    ) -> None:
        self.backends = set(backends)
        check_backends(self.backends)
        self.directory = Path(run_dir)
        self.settings = dict(settings)
        self.resume = resume
        self.seen: set[EntryKey] = set(skip)
        self._started = False
        self._writer: Any = None
        self._client: Any = None
        self._run_id = ""

    def _start(self) -> None:
        self._started = True
        if "tensorboard" in self.backends:
            from torch.utils.tensorboard import SummaryWriter

            events = self.directory / TENSORBOARD_DIR
            if not self.resume and events.is_dir():
                for old in events.glob("events.out.tfevents.*"):
                    old.unlink()
            self._writer = SummaryWriter(log_dir=str(events))
            text = json.dumps(self.settings, indent=2)
            self._writer.add_text("settings", f"```\n{text}\n```")
        if "mlflow" in self.backends:
            self._start_mlflow(self.settings, self.resume)

    def _start_mlflow(self, settings: Mapping[str, Any], resume: bool) -> None:
        from mlflow.tracking import MlflowClient

        # the store's INFO lines (mlflow sets its logger's level when imported)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)

        uri = f"sqlite:///{(self.directory / MLFLOW_DB).resolve()}"
        self._client = MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self._client.create_experiment(
                MLFLOW_EXPERIMENT,
                artifact_location=(self.directory / MLFLOW_ARTIFACTS).resolve().as_uri(),
            )
        )
        if resume:
            latest = self._client.search_runs(
                [experiment_id], max_results=1, order_by=["attributes.start_time DESC"]
            )
            if latest:
                self._run_id = latest[0].info.run_id
                self._client.update_run(self._run_id, status="RUNNING")
                return
        run = self._client.create_run(experiment_id, run_name=self.directory.name)
        self._run_id = run.info.run_id
        for name, value in settings.items():
            # MLflow keeps parameter values up to 6000 characters
            self._client.log_param(self._run_id, name, json.dumps(value)[:6000])

    def log(self, entry: Mapping[str, Any]) -> None:
        """Send one log entry (at its epoch as the step), unless already sent."""
        key = entry_key(entry)
        if key in self.seen:
            return
        self.seen.add(key)
        if not self._started:
            self._start()
        values = scalars(entry)
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, global_step=key[1])
            self._writer.flush()
        if self._client is not None:
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            metrics = [Metric(name, value, stamp, key[1]) for name, value in values.items()]
            self._client.log_batch(self._run_id, metrics=metrics)

    def log_all(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Send every entry not sent yet (the run's history once it has finished)."""
        for entry in entries:
            self.log(entry)

    def close(self, *, failed: bool = False) -> None:
        """Flush and close every backend (an MLflow run ends FINISHED, or FAILED)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._client is not None:
            self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")
            self._client = None


def check_log_text(text: str | None) -> tuple[str, ...]:
    """``--log``'s backends checked before any training (``jsonl`` when not given)."""
    backends = parse_log_backends(text) if text is not None else ("jsonl",)
    check_backends(backends)
    return backends
