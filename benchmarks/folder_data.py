"""Folder datasets at ImageNet size: peak memory of ``eqsearch eval`` and loader throughput.

Run: ``python benchmarks/folder_data.py [--figures memory,throughput] [--val-images 20000]
[--train-images 2000] [--workers 4] [--dir DIR]``. Writes a synthetic ImageFolder of
256×256 JPEGs (smooth random noise, ~10 KB each) under a temporary directory (``--dir``:
where; deleted afterwards), then:

- ``memory``: a tiny_convnet supernet checkpoint on that folder at 224×224, and
  ``eqsearch eval --split test --uniform 8/8`` over its ``val/`` images as a subprocess: the
  peak RSS of its main process (``VmHWM``), the largest peak of any of its processes (the
  kernel's ``ru_maxrss`` of the command and its loader workers) and the largest sum of PSS
  over its process tree (shared pages counted once) sampled every 100 ms, against the bytes
  of the split as one float32 tensor;
- ``throughput``: training images per second through ``DataBundle.train`` (decode,
  RandomResizedCrop to 224, flip, normalise; ``--workers`` DataLoader workers, batch 64),
  over one epoch after the first batch.

Prints one markdown row per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SIZE = 224


def _write_images(task: tuple[str, int, int, int]) -> None:
    import numpy as np
    from PIL import Image

    folder, start, count, seed = task
    rng = np.random.default_rng(seed)
    for index in range(start, start + count):
        noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        image = Image.fromarray(noise).resize((256, 256), Image.Resampling.BILINEAR)
        image.save(Path(folder) / f"{index:06d}.jpg", quality=85)


def write_synthetic_imagefolder(
    root: Path, *, train: int, val: int, classes: int = 10, processes: int = 2
) -> Path:
    """``root/train`` and ``root/val`` with ``classes`` class folders of 256×256 JPEGs
    (``train`` and ``val`` images in all, spread evenly); returns ``root``."""
    tasks = []
    for split, count in (("train", train), ("val", val)):
        for label in range(classes):
            folder = root / split / f"class{label:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            share = count // classes + (1 if label < count % classes else 0)
            for start in range(0, share, 500):
                tasks.append((str(folder), start, min(500, share - start), len(tasks)))
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_write_images, tasks))
    return root


def _checkpoint(root: Path, out: Path) -> Path:
    import torch

    from supernet import build_supernet, init_quantizers
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    spec = DataSpec("imagefolder", root=str(root), image_size=SIZE, holdout=64)
    data = build_data(spec)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=data.num_classes, in_channels=3, image_size=SIZE
    )
    init_quantizers(supernet, data.calibration_images(32))
    path = out / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 256})
    return path


def _tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                pending += [int(c) for c in (task / "children").read_text().split()]
    return found


def _pss(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes that map them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _high_water(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def memory(root: Path, work: Path, val: int) -> str:
    """The ``memory`` figure's row."""
    checkpoint = _checkpoint(root, work)
    command = [sys.executable, "-m", "eqsearch", "eval", "--supernet", str(checkpoint)]
    command += ["--split", "test", "--uniform", "8/8", "--form", "channel-sym-sym"]
    command += ["--no-progress", "--device", "cpu"]
    environment = {**os.environ, "PYTHONPATH": str(HERE)}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, cwd=HERE, stdout=subprocess.PIPE)
    peaks = {"tree": 0, "main": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peaks["main"] = max(peaks["main"], _high_water(process.pid))
            except OSError:
                break
            peaks["tree"] = max(peaks["tree"], sum(_pss(p) for p in _tree(process.pid)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode() if process.stdout else ""
    if status != 0:
        raise SystemExit(f"eqsearch eval failed ({status}):\n{output}")
    largest = usage.ru_maxrss * 1024  # KiB on Linux
    tensor = val * 3 * SIZE * SIZE * 4
    gib = 1 << 30
    return (
        f"| `eqsearch eval --split test` on {val:,} images at {SIZE}×{SIZE} (ImageFolder, "
        f"tiny_convnet, one subnet) | main process {peaks['main'] / gib:.2f} GiB peak RSS; "
        f"any process {largest / gib:.2f} GiB; all its processes (PSS summed) "
        f"{peaks['tree'] / gib:.2f} GiB; the split as one float32 tensor {tensor / gib:.1f} GiB; "
        f"{seconds:.0f} s | < 1.5 GiB |"
    )


def throughput(root: Path, workers: int, batch: int = 64) -> str:
    """The ``throughput`` figure's row."""
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec

    spec = DataSpec(
        "imagefolder", root=str(root), image_size=SIZE, batch_size=batch, workers=workers
    )
    data = build_data(spec, pin_memory=False)
    batches = data.train.batches(0)
    next(batches)  # workers started, first batch decoded
    started, images = time.perf_counter(), 0
    for image_batch, _ in batches:
        images += len(image_batch)
    seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    return (
        f"| ImageFolder training batches at {SIZE}×{SIZE} (decode 256×256 JPEG, "
        f"RandomResizedCrop, flip, normalise), {workers} workers, batch {batch} | "
        f"{images / seconds:.0f} images/s ({images} images in {seconds:.1f} s; "
        f"{os.cpu_count()} cores, load {load:.1f}) | measured |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--figures", default="memory,throughput")
    parser.add_argument("--val-images", type=int, default=20_000)
    parser.add_argument("--train-images", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", help="where the temporary folder goes (default: $TMPDIR)")
    args = parser.parse_args()
    figures = set(args.figures.split(","))
    work = Path(tempfile.mkdtemp(prefix="eqsearch-folder-", dir=args.dir))
    try:
        started = time.perf_counter()
        root = write_synthetic_imagefolder(
            work / "data", train=args.train_images, val=args.val_images
        )
        written = sum(f.stat().st_size for f in root.rglob("*.jpg"))
        print(
            f"# wrote {args.train_images + args.val_images:,} JPEGs ({written / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        print("| figure | value | target |")
        print("|---|---|---|")
        if "memory" in figures:
            print(memory(root, work, args.val_images), flush=True)
        if "throughput" in figures:
            print(throughput(root, args.workers), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"# this script's own peak RSS {own:.2f} GiB")


if __name__ == "__main__":
    main()
