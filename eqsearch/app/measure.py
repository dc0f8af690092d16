"""Measuring a trained supernet's subnets: samples files, and the verification of a front."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqsearch.errors import InputError
from eqsearch.resources import check_memory, configs_memory_bytes

if TYPE_CHECKING:
    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from predictors.samples.collect import SampleRun


def sample_subnets(
    supernet_path: str | Path,
    out_csv: str | Path | None = None,
    n: int = 1000,
    *,
    seed: int = 0,
    strategy: str = "spread",
    forms: str = "global",
    shard: tuple[int, int] | None = None,
    split: str = "holdout",
    bn_images: int | None = None,
    holdout: int | None = None,
    val_images: int | None = None,
    data_root: str | None = None,
    dataset: str | None = None,
    transforms: str | None = None,
    device: str = "cpu",
    workers: int | None = None,
    progress: bool | Callable[[int, int], None] = True,
) -> SampleRun:
    """Sample ``n`` subnets of a trained supernet and measure each with the supernet oracle.

    Args:
        supernet_path: a ``supernet.pt`` checkpoint.
        out_csv: the samples file; ``samples.csv`` beside the checkpoint by default.
        n: distinct subnets over all shards.
        seed, strategy, forms: how configs are drawn (see :class:`SamplingConfig`).
        shard: ``(i, count)``; by default torchrun's ``(RANK, WORLD_SIZE)``, else unsharded.
        split: ``"holdout"`` (training images held out, the paper's choice) or ``"test"``.
        bn_images: BN re-calibration images (the checkpoint's training setting by default).
        holdout: training images held out for scoring (the checkpoint's setting by default);
            more images give the accuracies a finer granularity (100/holdout points).
        val_images: the scoring images (M): with ``split="holdout"`` the same as
            ``holdout``; with ``"test"`` a fixed subset of the test split (all by default).
        data_root, dataset, transforms: override the checkpoint's data root, dataset (a
            name, or a factory the caller names) and transform preset.
        device: torch device of the supernet.
        workers: processes measuring side by side, one torch thread each (CPU only; see
            ``supernet.evaluation.evaluate.supernet_oracle`` for the default). Rows are still
            written in
            index order, one fsync'd row at a time.
        progress: a rich progress bar (True, with subnets per second), none (False), or a
            callback (done, total).
    """
    from eqsearch.files import file_sha256
    from predictors.samples.collect import check_samples_target, collect_samples
    from predictors.samples.settings import SamplingConfig, shard_from_environment
    from predictors.samples.sidecars import shard_path
    from predictors.samples.source import SampleSource

    config = SamplingConfig(
        n=n, seed=seed, strategy=strategy, forms=forms, shard=shard or shard_from_environment()
    )
    for name, value in (
        ("bn_images", bn_images),
        ("holdout", holdout),
        ("val_images", val_images),
        ("workers", workers),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            what = "processes" if name == "workers" else "images"
            raise InputError(f"{name} must be a positive number of {what}; got {value!r}")
    if split == "holdout" and val_images is not None:
        if holdout is not None and holdout != val_images:
            raise InputError(
                f"with the holdout split, val_images and holdout are the same number; got "
                f"{val_images} and {holdout}"
            )
        holdout, val_images = val_images, None
    checkpoint_path = Path(supernet_path)
    target = Path(out_csv) if out_csv is not None else checkpoint_path.parent / "samples.csv"
    check_samples_target(shard_path(target, config.shard), with_source=True)
    if config.shard[1] > 1:
        check_samples_target(target, with_source=True)
    from supernet.evaluation.evaluate import (
        checkpoint_data,
        evaluation_set,
        stored_bn_images,
        supernet_oracle,
    )
    from supernet.files.checkpoint import load_supernet

    supernet, checkpoint = load_supernet(checkpoint_path, map_location=device)
    if checkpoint.get("kind") != "supernet":
        raise InputError(
            f"{checkpoint_path} is a full-precision checkpoint (before quantization-aware "
            "training); sample the run's supernet.pt"
        )
    space = supernet.space
    needed = configs_memory_bytes(config.n, space.n_layers, len(space.genes))
    check_memory(needed, f"--subnets {config.n}")  # the draw holds every config, before any file
    data = checkpoint_data(
        checkpoint, data_root=data_root, holdout=holdout, dataset=dataset, transforms=transforms
    )
    stored_bn = stored_bn_images(checkpoint)
    evaluation = evaluation_set(
        data, split=split, bn_images=bn_images or stored_bn, val_images=val_images
    )
    oracle = supernet_oracle(supernet, evaluation, workers=workers)
    source = SampleSource(
        supernet_sha256=file_sha256(checkpoint_path),
        supernet=str(checkpoint_path),
        split=split,
        bn_images=bn_images or stored_bn,
        holdout=holdout or int((checkpoint.get("train_config") or {}).get("holdout", 0)) or None,
        val_images=val_images,
    )
    if callable(progress):
        return collect_samples(
            oracle, supernet.space, target, config, progress=progress, source=source
        )
    if not progress:
        return collect_samples(oracle, supernet.space, target, config, source=source)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        _rate_column(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("subnets sampled", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return collect_samples(
            oracle, supernet.space, target, config, progress=advance, source=source
        )


def _rate_column() -> Any:
    """A rich progress column: subnets measured per second (rich's moving estimate)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class SubnetRate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.speed
            return Text(
                "" if speed is None else f"{speed:.2f} subnets/s", style="progress.data.speed"
            )

    return SubnetRate()


def verify_front(
    front: ParetoFront, oracle: AccuracyOracle, k: int
) -> tuple[ParetoFront, float | None]:
    """Measure ``k`` configs spread over the front with ``oracle``; returns the front with
    their measured accuracies and Kendall's τ between predicted and measured (None for k < 2)."""
    from predictors.metrics import kendall_tau

    indices = front.spread(k)
    measured = oracle.evaluate(front.batch.take(indices))
    verified = front.with_measured(indices, measured)
    if len(indices) < 2 or "accuracy" not in front.objective_names:
        return verified, None
    predicted = front.column("accuracy")[indices]
    tau = kendall_tau(predicted, measured)  # the order scipy was called in before
    return verified, tau if np.isfinite(tau) else None
