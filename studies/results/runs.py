"""Where a stage of ``study all`` keeps its runs, and a training run made once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Log = Callable[[str], None]


def seed_dir(root: Path, stage: str, seed: int) -> Path:
    """Where a stage's run of one seed writes its files."""
    return root / stage / f"seed-{seed}"


def train_once(run: Path, settings: dict[str, object]) -> Path:
    """Train the run ``run`` with ``settings`` once (an interrupted or finished run is
    resumed); its supernet checkpoint."""
    from eqsearch.app.training import TrainRequest, train_run
    from supernet.training.run_files import CHECKPOINT_NAME

    checkpoint = run / CHECKPOINT_NAME
    request = TrainRequest(str(run), settings=settings, resume=checkpoint.is_file(), progress=False)
    outcome = train_run(request)
    if outcome.failed:
        raise RuntimeError(f"{run} did not train: {outcome.failed}")
    return checkpoint
