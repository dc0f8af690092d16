"""The fine-tuning stage of ``study all``: one FP ResNet-20 fine-tuned under four recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from studies.results.runs import Log, seed_dir, train_once
from studies.results.tables import SeedTable, numeric_frame

FINETUNE_FLAGS: dict[str, dict[str, object]] = {
    "(defaults: Adam 1e-3, cosine, joint)": {},
    "`--optimizer sgd --lr 0.002 --warmup-epochs 2`": {
        "optimizer": "sgd",
        "lr": 0.002,
        "warmup_epochs": 2,
    },
    "`--schedule progressive --optimizer sgd --lr 0.002 --warmup-epochs 1` (cosine)": {
        "schedule": "progressive",
        "optimizer": "sgd",
        "lr": 0.002,
        "warmup_epochs": 1,
    },
    "`--schedule progressive --optimizer sgd --lr 0.005 --warmup-epochs 1 --lr-schedule "
    "constant`": {
        "schedule": "progressive",
        "optimizer": "sgd",
        "lr": 0.005,
        "warmup_epochs": 1,
        "lr_schedule": "constant",
    },
}
"""The fine-tuning table's rows: the flags each run adds to the common command."""
FINETUNE_BITS = {"w_choices": (2, 4, 8), "a_choices": (2, 4, 8)}


def finetune_resnet20(root: Path, seed: int, quick: bool, log: Log) -> dict[str, SeedTable]:
    """One FP ResNet-20 on the digits, fine-tuned into a supernet once per flag set: W8A8 on
    the held-out images by epoch, and W8A8 / FP32 / W2A2 on the test split at the end."""

    from eqsearch.space import QuantForm
    from supernet.evaluation.evaluate import load_for_evaluation, uniform_table
    from supernet.training.run_files import FP_CHECKPOINT_NAME

    base = seed_dir(root, "finetune-resnet20", seed)
    common = {"model": "resnet20", "dataset": "digits", **FINETUNE_BITS, "seed": seed}
    epochs = 3 if quick else 9  # above the recipes' two warmup epochs
    fp_run = base / "fp-run"
    log(f"finetune-resnet20 seed {seed}: {fp_run}")
    fp_checkpoint = train_once(fp_run, {**common, "fp_epochs": 1 if quick else 15, "epochs": 1})
    form = QuantForm.parse("channel-sym-sym")
    held_out, test = {}, {}
    test_images = 0
    for index, (label, flags) in enumerate(FINETUNE_FLAGS.items()):
        run = base / f"run-{index}"
        settings = {**common, **flags, "init": str(fp_run / FP_CHECKPOINT_NAME), "epochs": epochs}
        checkpoint = train_once(run, settings)
        lines = (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
        by_epoch = {
            entry["epoch"]: entry["acc_largest"]
            for entry in map(json.loads, lines)
            if entry.get("phase") == "supernet"
        }
        trained = [by_epoch[epoch] for epoch in range(1, epochs + 1)]
        held_out[label] = {
            "W8A8 epoch 1": trained[0],
            "W8A8 epoch 2": trained[1],
            "lowest W8A8": min(trained),
            "W8A8 last epoch": trained[-1],
        }
        supernet, _, evaluation = load_for_evaluation(checkpoint, split="test")
        table = uniform_table(supernet, evaluation, bits=(8, 2), forms=[form])
        values = table[table.columns[0]].to_numpy(dtype=float).tolist()
        accuracy = dict(zip(table.index, values, strict=True))
        test[label] = {
            "test W8A8": accuracy["W8/A8"],
            "test FP32": accuracy["FP32"],
            "test W2A2": accuracy["W2/A2"],
        }
        test_images = len(evaluation.labels)
    scoring = pd.DataFrame(held_out).T
    tested = pd.DataFrame(test).T
    return {
        "finetune-resnet20": SeedTable(
            numeric_frame(scoring), _held_out_images(fp_checkpoint), tuple(scoring.columns)
        ),
        "finetune-resnet20-test": SeedTable(
            numeric_frame(tested), test_images, tuple(tested.columns)
        ),
    }


def _held_out_images(checkpoint: Path) -> int:
    """The held-out images a run's log scores (the digits' whole training split)."""
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set
    from supernet.files.checkpoint import load_checkpoint

    data = checkpoint_data(load_checkpoint(checkpoint))
    return len(evaluation_set(data, split="holdout").labels)
