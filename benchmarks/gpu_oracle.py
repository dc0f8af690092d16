"""Subnets per second of the supernet oracle on resnet18 at 224×224 from an ImageFolder on disk.

Run: ``python benchmarks/gpu_oracle.py --device cuda --calib-images 5000 --val-images 10000``
(``benchmarks/gpu_suite.sh`` runs it). Writes a synthetic ImageFolder (random JPEGs, 10
classes: ``train/`` holds the calibration images, ``val/`` the scoring ones) under ``--root``
once, reads it as ``eqsearch`` reads folder data (resize 256, centre crop 224), and times
:class:`supernet.evaluation.oracle.SupernetOracle` on ``--subnets`` random subnets after one untimed
subnet. ``--folder-only`` writes the folder and stops (e.g. for a torchrun train step).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

CLASSES = 10
SIDE = 256


def _write(task: tuple[str, int, int]) -> None:
    from PIL import Image

    path, seed, side = task
    rng = np.random.default_rng(seed)
    # smooth noise (a coarse grid upsampled): JPEG-encodes and decodes like a photograph
    coarse = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((side, side), Image.BILINEAR).save(path, quality=90)


def write_folder(root: Path, train_images: int, val_images: int, side: int = SIDE) -> None:
    """A synthetic ImageFolder (``train/`` and ``val/``, :data:`CLASSES` classes) under
    ``root``, written once: a folder holding the counts already is kept."""
    marker = root / f".complete-{train_images}-{val_images}-{side}"
    if marker.exists():
        return
    tasks = []
    for split, count in (("train", train_images), ("val", val_images)):
        for label in range(CLASSES):
            (root / split / f"class{label:02d}").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            folder = root / split / f"class{index % CLASSES:02d}"
            seed = index + (0 if split == "train" else 10**7)
            tasks.append((str(folder / f"{index:06d}.jpg"), seed, side))
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(_write, tasks, chunksize=64))
    marker.touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--root", default="/tmp/eqsearch-gpu-suite/imagefolder")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--calib-images", type=int, default=5000)
    parser.add_argument("--val-images", type=int, default=10000)
    parser.add_argument("--subnets", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--folder-only", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    started = time.perf_counter()
    write_folder(root, args.calib_images, args.val_images, max(args.image_size, SIDE))
    written = time.perf_counter() - started
    if args.folder_only:
        print(f"# {root}: written in {written:.0f} s", flush=True)
        return 0

    from supernet import build_supernet
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.evaluation.evaluate import evaluation_set, supernet_oracle

    spec = DataSpec(
        name="imagefolder",
        root=str(root),
        batch_size=args.batch,
        eval_batch_size=args.batch,
        holdout=1,
        image_size=args.image_size,
        workers=args.workers,
    )
    data = build_data(spec, seed=0)
    # streamed from disk as `eqsearch eval`/`sample` read folder data; on a GPU the oracle
    # decodes them once and keeps them there when they fit in a quarter of its free memory
    evaluation = evaluation_set(
        data, split="test", bn_images=args.calib_images, val_images=args.val_images
    )
    device = torch.device(args.device)
    supernet = build_supernet(args.model, num_classes=CLASSES, image_size=args.image_size).to(
        device
    )
    oracle = supernet_oracle(supernet, evaluation, workers=1)
    space = supernet.space
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(args.subnets + 1)]
    started = time.perf_counter()
    oracle.evaluate(configs[:1])  # untimed: first calls, decoding, the copy to the device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    oracle.evaluate(configs[1:])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    rate = args.subnets / (time.perf_counter() - started)
    print(
        f"| oracle subnets/s, {args.model} {args.image_size}² | {rate:.3f} | "
        f"{len(evaluation.calibration)} calibration + {len(evaluation.scoring)} scoring images "
        f"streamed from an ImageFolder on disk (first subnet with the reading {loaded:.0f} s, "
        f"written in {written:.0f} s) |",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
