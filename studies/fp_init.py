"""One full-precision pretraining shared by every run of a study (trials, ablation variants)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from eqsearch.locks import exclusive_writer
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet
from supernet.training.run_files import FP_CHECKPOINT_NAME


def shared_fp_checkpoint(base: TrainConfig, out_dir: str | Path) -> Path | None:
    """The FP model that every run of a study starts from, trained once per ``out_dir``.

    Study runs differ only in supernet settings (loss weights, schedules, learning rate), so
    FP pretraining (``base.fp_epochs`` at the base learning rate) is the same for all of them.
    One process trains it while holding ``out_dir/fp.lock``; concurrent workers wait and reuse
    ``out_dir/fp.pt``. Returns None when ``base`` starts from ``init`` or has no FP epochs.
    """
    if base.init or base.fp_epochs == 0:
        return None
    out = Path(out_dir)
    target = out / FP_CHECKPOINT_NAME
    with exclusive_writer(out / "fp.lock", what="the shared pretraining", wait=True):
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=out) as scratch:
                train_supernet(base, scratch, progress=False, stop_after=0)
                os.replace(Path(scratch) / FP_CHECKPOINT_NAME, target)
    return target
