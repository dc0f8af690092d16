"""Fine-tuning a user's own full-precision ResNet-18 (32×32 images) into an elastic supernet.

Run from the repository root: ``python benchmarks/finetune_resnet18_32.py [--dataset
mnist32] [--fp-epochs 6] [--epochs 3] [--lr 0.005] [--out DIR] [--fp-weights fp.pth]
[--quick] [--json figures.json]``.

1. The user's model: ``torchvision.models.resnet18(num_classes=10)`` trained in plain
   PyTorch (SGD, momentum 0.9, lr 0.05, cosine, batch 64, no augmentation) for
   ``--fp-epochs`` on the training split of ``benchmarks/finetune_data.py:DATASET`` (3×32×32
   MNIST digits), saved as a plain ``state_dict`` (``fp.pth``) and scored on the validation
   split in PyTorch and with ``eqsearch eval --supernet fp.pth --model resnet18``.
   ``--fp-weights`` starts from such a file instead.
2. ``eqsearch train --init fp.pth`` with the fine-tuning recipe of
   docs/own-data-and-fine-tuning.md (progressive schedule, SGD, one warmup epoch, a constant
   rate, bits 2,4,8), as a subprocess; its ``train_log.jsonl`` gives FP, W8A8 and the lowest
   open bits at epoch 0 and after each epoch (on the ``--holdout`` training images).
3. ``eqsearch eval`` of the final supernet on the validation split: W8A8 and W2A2.

Prints the command of each step and the figures: FP accuracy, W8A8 per epoch, the largest
drop of W8A8 below the epoch-0 FP, W2A2 at the end. ``--quick`` is a smoke run of seconds'
scale (a few images, one epoch of each, bits 2,8): its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# Idle OpenMP threads that spin steal the cores of a busy machine (eqsearch's commands sleep
# them too); set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torchvision
from torch.utils.data import DataLoader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import finetune_data  # noqa: E402


def train_fp(train: Any, *, epochs: int, lr: float, batch_size: int, seed: int) -> torch.nn.Module:
    """The user's plain PyTorch training of torchvision's ResNet-18."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    steps = max(1, epochs * len(loader))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for epoch in range(epochs):
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
        print(
            f"FP epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, dataset: Any) -> float:
    """Top-1 % with the model's own BN statistics."""
    model.eval()
    correct = 0
    for images, labels in DataLoader(dataset, batch_size=256):
        correct += int((model(images).argmax(1) == labels).sum())
    return 100.0 * correct / len(dataset)


def run(command: list[str]) -> None:
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def shown(command: list[str]) -> list[str]:
    """``eqsearch ...`` as a user types it (the subprocess runs ``python -m eqsearch``)."""
    return [sys.executable, "-m", "eqsearch", *command]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = f"benchmarks/finetune_data.py:{args.dataset}"
    train, val = getattr(finetune_data, args.dataset)()
    figures: dict[str, Any] = {
        "dataset": dataset,
        "train_images": len(train),
        "val_images": len(val),
    }
    fp_path = out / "fp.pth"
    if args.fp_weights:
        state = torch.load(args.fp_weights, map_location="cpu", weights_only=True)
        torch.save(state, fp_path)
        model = torchvision.models.resnet18(num_classes=10)
        model.load_state_dict(state)
    else:
        started = time.perf_counter()
        model = train_fp(
            train, epochs=args.fp_epochs, lr=args.fp_lr, batch_size=args.batch_size, seed=args.seed
        )
        figures["fp_train_seconds"] = round(time.perf_counter() - started, 1)
        torch.save(model.state_dict(), fp_path)
    figures["fp_val_pytorch"] = accuracy(model, val)
    print(f"FP ResNet-18, plain PyTorch: {figures['fp_val_pytorch']:.2f}% on the validation split")

    fp_json = out / "fp_eval.json"
    run(
        shown(
            [
                "eval", "--supernet", str(fp_path), "--model", "resnet18", "--dataset", dataset,
                "--calib-images", str(args.calib_images), "--device", "cpu", "--no-progress",
                "--json", str(fp_json), "--force",
            ]
        )
    )  # fmt: skip
    fp_eval = json.loads(fp_json.read_text())
    figures["fp_val_eqsearch"] = fp_eval["accuracy"]
    figures["fp_val_eqsearch_bn_recalibrated"] = fp_eval["accuracy_bn_recalibrated"]

    run_dir = out / "ft"
    bits = "2,8" if args.quick else args.bits
    train_flags = [
        "--model", "resnet18", "--init", str(fp_path), "--dataset", dataset,
        "--transforms", "none", "--w-choices", bits, "--a-choices", bits,
        "--schedule", "progressive", "--epochs", str(args.epochs),
        "--optimizer", "sgd", "--momentum", "0.9", "--lr", str(args.lr),
        "--warmup-epochs", str(args.warmup_epochs), "--lr-schedule", "constant",
        "--batch-size", str(args.batch_size), "--holdout", str(args.holdout),
        "--calib-images", str(args.calib_images),
        "--quant-init-images", str(args.quant_init_images), "--seed", str(args.seed),
    ]  # fmt: skip
    figures["train_command"] = shlex.join(["eqsearch", "train", *train_flags, "--out", "RUN"])
    started = time.perf_counter()
    if args.val_each_epoch:
        figures["val_by_epoch"] = train_in_process(args, fp_path, dataset, bits, run_dir)
        reference = figures["val_by_epoch"][0]["fp"]
        figures["val_largest_drop_w8a8"] = round(
            max(reference - row["w8a8"] for row in figures["val_by_epoch"]), 4
        )
    else:
        run(
            shown(
                ["train", *train_flags, "--out", str(run_dir), "--device", "cpu",
                 "--no-progress", "--force"]
            )
        )  # fmt: skip
    figures["train_seconds"] = round(time.perf_counter() - started, 1)
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    start = next(entry for entry in log if entry.get("epoch") == 0 and "acc_fp" in entry)
    epochs = [entry for entry in log if entry.get("epoch", 0) > 0 and "acc_largest" in entry]
    fp = float(start["acc_fp"])
    figures["holdout_fp_epoch0"] = fp
    figures["holdout_w8a8"] = [float(start["acc_largest"])] + [
        float(entry["acc_largest"]) for entry in epochs
    ]
    figures["holdout_lowest_open"] = [
        {
            "epoch": int(entry["epoch"]),
            "bits": min(entry["open_bits"]),
            "acc": entry["acc_smallest"],
        }
        for entry in epochs
    ]
    figures["largest_drop_w8a8"] = round(max(fp - acc for acc in figures["holdout_w8a8"]), 4)

    for bits_pair in ("8/8", "2/2"):
        table = out / f"eval_{bits_pair.replace('/', '_')}.json"
        run(
            shown(
                [
                    "eval", "--supernet", str(run_dir / "supernet.pt"), "--dataset", dataset,
                    "--uniform", bits_pair, "--form", "channel-sym-sym", "--device", "cpu",
                    "--no-progress", "--json", str(table), "--force",
                ]
            )
        )  # fmt: skip
        rows = json.loads(table.read_text())
        figures[f"val_w{bits_pair[0]}a{bits_pair[2]}"] = _accuracy_of(rows)
    return figures


def train_in_process(
    args: argparse.Namespace, fp_path: Path, dataset: str, bits: str, run_dir: Path
) -> list[dict[str, Any]]:
    """The ``eqsearch train`` run of the same settings as a ``TrainConfig`` in this process,
    with the validation split scored after every epoch too (FP of the shared weights, W8A8
    and the lowest open bits, BN re-calibrated on ``--calib-images``); epoch 0 is a run of
    no epochs (the start, as the training scores it before its first step)."""
    from supernet.evaluation.evaluate import evaluation_set, supernet_oracle
    from supernet.training.config import TrainConfig
    from supernet.training.loop import EpochReport, train_supernet

    widths = tuple(int(width) for width in bits.split(","))
    config = TrainConfig(
        model="resnet18", init=str(fp_path), dataset=str(ROOT / dataset), transforms="none",
        w_bits=widths, a_bits=widths, schedule="progressive", epochs=args.epochs,
        optimizer="sgd", momentum=0.9, lr=args.lr, warmup_epochs=args.warmup_epochs,
        lr_schedule="constant", batch_size=args.batch_size, holdout=args.holdout,
        bn_images=args.calib_images, quant_init_images=args.quant_init_images,
        seed=args.seed, device="cpu",
    )  # fmt: skip
    scores: list[dict[str, Any]] = []

    def score(report: EpochReport) -> None:
        space = report.supernet.space
        form = space.forms[0]
        open_bits = report.entry.get("open_bits", [min(widths)])
        evaluation = evaluation_set(report.data, split="test", bn_images=args.calib_images)
        oracle = supernet_oracle(report.supernet, evaluation, workers=1)
        low = min(open_bits)
        row = {
            "epoch": int(report.entry["epoch"]),
            "fp": oracle.score(None),
            "w8a8": oracle.score(space.uniform(max(widths), max(widths), form)),
            "lowest_bits": low,
            "lowest": oracle.score(space.uniform(low, low, form)),
        }
        print(f"validation split, epoch {row['epoch']}: {row}", flush=True)
        scores.append(row)

    start = train_supernet(
        replace(config, epochs=0, warmup_epochs=0), run_dir / "start", progress=False, force=True
    )
    score(EpochReport(start.history[0], start.supernet, start.data, 0))
    train_supernet(config, run_dir, progress=False, force=True, on_epoch=score)
    return scores


def _accuracy_of(rows: dict[str, Any]) -> float:
    """Top-1 of the single row of an ``eval --json`` table."""
    (row,) = rows.values()
    for key in ("top1", "accuracy", "acc"):
        if key in row:
            return float(row[key])
    raise KeyError(f"no accuracy column in {sorted(row)}")


def report(figures: dict[str, Any]) -> None:
    w8a8 = figures["holdout_w8a8"]
    print()
    print(f"data: {figures['dataset']} ({figures['train_images']}/{figures['val_images']} images)")
    print(
        f"FP ResNet-18 on the validation split: {figures['fp_val_pytorch']:.2f}% (PyTorch), "
        f"{figures['fp_val_eqsearch']:.2f}% (eqsearch eval; BN re-calibrated "
        f"{figures['fp_val_eqsearch_bn_recalibrated']:.2f}%)"
    )
    print(f"recipe: {figures['train_command']}")
    print(f"held-out training images: FP {figures['holdout_fp_epoch0']:.2f}% at epoch 0")
    print("W8A8 by epoch (0 = before training): " + ", ".join(f"{acc:.2f}" for acc in w8a8))
    for entry in figures["holdout_lowest_open"]:
        bits = f"W{entry['bits']}A{entry['bits']}"
        print(f"  epoch {entry['epoch']}: lowest open bits {bits} {entry['acc']:.2f}")
    print(f"largest drop of W8A8 below FP: {figures['largest_drop_w8a8']:.2f} points")
    if "val_by_epoch" in figures:
        print("validation split by epoch (FP of the shared weights, W8A8, lowest open bits):")
        for row in figures["val_by_epoch"]:
            low = f"W{row['lowest_bits']}A{row['lowest_bits']}"
            print(
                f"  epoch {row['epoch']}: FP {row['fp']:.2f}  W8A8 {row['w8a8']:.2f}  "
                f"{low} {row['lowest']:.2f}"
            )
        print(
            "largest drop of W8A8 below the epoch-0 FP, validation split: "
            f"{figures['val_largest_drop_w8a8']:.2f} points"
        )
    print(
        f"validation split at the end: W8A8 {figures['val_w8a8']:.2f}%, "
        f"W2A2 {figures['val_w2a2']:.2f}%"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist32", help="factory in finetune_data.py")
    parser.add_argument("--fp-epochs", type=int, default=6)
    parser.add_argument("--fp-lr", type=float, default=0.05)
    parser.add_argument("--fp-weights", help="a plain ResNet-18 state_dict instead of training")
    parser.add_argument("--epochs", type=int, default=3, help="supernet epochs")
    parser.add_argument("--bits", default="2,4,8")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--holdout", type=int, default=1000)
    parser.add_argument("--calib-images", type=int, default=500)
    parser.add_argument("--quant-init-images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="run directory (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--val-each-epoch",
        action="store_true",
        help="train in this process and score the validation split after every epoch too",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run on a few images")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.fp_epochs, args.epochs, args.warmup_epochs = "mnist32_tiny", 1, 2, 1
        args.batch_size, args.holdout, args.calib_images, args.quant_init_images = 16, 16, 16, 8
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    with tempfile.TemporaryDirectory() as temporary:
        if args.out is None:
            args.out = temporary
        figures = measure(args)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
