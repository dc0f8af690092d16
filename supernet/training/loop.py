"""``train_supernet``: a run from its start or its stored state through its supernet epochs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eqsearch.locks import hold_directory
from supernet.data.bundle import DataBundle
from supernet.data.datasets import build_data
from supernet.data.own_data import steps_per_epoch
from supernet.devices import resolve_device
from supernet.files.checkpoint import save_supernet
from supernet.files.initial_weights import load_initial_weights
from supernet.networks.build import build_supernet
from supernet.networks.elastic import Supernet
from supernet.networks.models import model_entry
from supernet.networks.quant_init import init_quantizers
from supernet.runtime import compiled_quantizers, keep_freed_memory, one_thread
from supernet.training.amp import gradient_scaler, optimizer_step
from supernet.training.config import TrainConfig
from supernet.training.distributed import (
    Distributed,
    average_gradients,
    broadcast_state,
    distributed_context,
)
from supernet.training.divergence import (
    NOTHING_KEPT,
    LaggedLosses,
    check_finite,
    kept_message,
)
from supernet.training.losses import wdr_weights
from supernet.training.optim import optimizer_and_schedule, parameter_groups
from supernet.training.pretrain import fp_pretrain, reorder_channels
from supernet.training.progress import Progress
from supernet.training.rng_state import restore_training_rng, training_rng_state
from supernet.training.run_files import (
    CHECKPOINT_NAME,
    FP_CHECKPOINT_NAME,
    LOG_NAME,
    load_stored_weights,
    previous_run_files,
    stored_run,
    write_log,
)
from supernet.training.sandwich import (
    draw_sandwich,
    loss_log_key,
    open_bit_widths,
    sandwich_step,
    stage_openings,
)
from supernet.training.scoring import epoch_accuracy, start_accuracies, start_entry


@dataclass
class EpochReport:
    """What an ``on_epoch`` callback sees after a supernet epoch.

    ``epoch`` is the index of the epoch just finished, from 0 (a step for Optuna's
    ``trial.report``); ``entry["epoch"]``, as the log, counts from 1. The epoch-0 evaluation
    before training is in the log's first line and in ``TrainResult.history``, not a report.
    """

    entry: dict[str, Any]
    supernet: Supernet
    data: DataBundle
    epoch: int


@dataclass
class TrainResult:
    """What :func:`train_supernet` returns."""

    supernet: Supernet
    history: list[dict[str, Any]]
    checkpoint: Path | None
    data: DataBundle


def train_supernet(
    config: TrainConfig,
    out_dir: str | Path | None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochReport], None] | None = None,
    stop_after: int | None = None,
    force: bool = False,
    supernet: Supernet | None = None,
    data: DataBundle | None = None,
) -> TrainResult:
    """Train an elastic supernet and write ``out_dir/supernet.pt`` after every epoch.

    Args:
        config: the run's settings.
        out_dir: where ``supernet.pt``, ``fp.pt`` and ``train_log.jsonl`` go (None: keep
            nothing on disk, e.g. for tuning trials).
        resume: continue the run stored in ``out_dir/supernet.pt`` (weights, optimizer,
            schedule, RNG state and epoch restored exactly).
        progress: show rich progress bars (main process only).
        on_epoch: called after each supernet epoch with an :class:`EpochReport` (the log
            entry, the supernet, the data), before the checkpoint is written; it may add
            values to the entry (they are logged) or raise to stop (e.g. Optuna pruning).
        stop_after: return after this many epochs of this call (the checkpoint can be resumed).
        force: start a new run over the ``eqsearch train`` run in ``out_dir`` (its files are
            removed once the data and the model are built; see :func:`previous_run_files`).
        supernet: train this supernet instead of building ``config.model`` (its space is
            its own; ``config.model`` should name what rebuilds it, for checkpoints).
        data: train on this data instead of loading ``config.dataset`` (e.g.
            :func:`supernet.training.fit.loader_data`).

    While it runs, ``out_dir`` is locked (see ``eqsearch.locks.hold_directory``): a second
    run into it is refused at once.

    Raises:
        ValueError: bad settings, data or files (existing checkpoint without ``resume``).
        TrainingDiverged: a loss became NaN/inf (the previous epoch's checkpoint is kept).
    """
    # A joint (elastic-architecture) model runs hundreds of small ops per step: on CPU each
    # op split over threads waits at a barrier for a busy core (a sandwich step of
    # oqa_mbv3_tiny on 8×8 digits: 140 ms on one thread, 2.1 s on two, on the loaded 2-core
    # machine; see supernet.runtime.one_thread).
    joint_on_cpu = model_entry(config.model).joint and resolve_device(config.device).type == "cpu"
    main_process = distributed_context().is_main
    with (
        hold_directory(out_dir) if out_dir is not None and main_process else nullcontext(),
        one_thread() if joint_on_cpu else nullcontext(),
        compiled_quantizers(config.compile),
    ):
        return _train_supernet(
            config,
            out_dir,
            resume=resume,
            progress=progress,
            on_epoch=on_epoch,
            stop_after=stop_after,
            force=force,
            given_supernet=supernet,
            given_data=data,
        )


def _train_supernet(
    config: TrainConfig,
    out_dir: str | Path | None,
    *,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[EpochReport], None] | None,
    stop_after: int | None,
    force: bool,
    given_supernet: Supernet | None = None,
    given_data: DataBundle | None = None,
) -> TrainResult:
    device = resolve_device(config.device)  # cuda:<LOCAL_RANK> under torchrun
    dist = distributed_context(device)
    keep_freed_memory()
    out = Path(out_dir) if out_dir is not None else None
    checkpoint_path = out / CHECKPOINT_NAME if out is not None else None
    stored: dict[str, Any] | None = None
    stored_fp: dict[str, Any] | None = None
    replaced: list[Path] = []
    if out is not None and force and not resume:
        replaced = previous_run_files(out) if dist.is_main else []
    elif out is not None:
        stored, stored_fp = stored_run(out, config, resume)

    torch.manual_seed(config.seed)  # weight init and dropout draw from torch's global RNG
    data = build_data(config.data_spec(), seed=config.seed) if given_data is None else given_data
    if given_supernet is None:
        given_supernet = build_supernet(
            config.model,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            image_size=data.image_size,
            space=config.space,
            pretrained=config.pretrained,
        )
    supernet = given_supernet.to(device)
    space = supernet.space
    reporter = Progress(progress and dist.is_main)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    optimizer, scheduler = optimizer_and_schedule(
        config,
        parameter_groups(supernet, config.weight_decay),
        data,
        dist,
        weight_decay=0.0,  # each group sets its own
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
    )
    for path in replaced:
        path.unlink()
    with reporter.running():
        if stored is not None:
            load_stored_weights(supernet, stored, checkpoint_path)
            optimizer.load_state_dict(stored["optimizer"])
            scheduler.load_state_dict(stored["scheduler"])
            restore_training_rng(stored, device)
            history = list(stored.get("history", []))
            start_epoch = int(stored["epoch"])
        else:
            if dist.world_size > 1:
                broadcast_state(supernet)
            if config.init:
                load_initial_weights(supernet, config.init, skip_head=config.init_skip_head)
            elif config.fp_epochs > 0:
                save_fp = None
                if out is not None and dist.is_main:

                    def save_fp(fields: dict[str, Any]) -> None:
                        save_supernet(
                            out / FP_CHECKPOINT_NAME,
                            supernet,
                            kind="fp",
                            train_config=config.to_dict(),
                            data=config.data_spec().to_dict(),
                            **fields,
                        )

                if stored_fp is not None:
                    load_stored_weights(
                        supernet, stored_fp, out / FP_CHECKPOINT_NAME if out else None
                    )
                history += fp_pretrain(
                    supernet, data, config, device, dist, reporter, stored_fp, save_fp
                )
            if config.fp_epochs > 0 or config.init:
                reorder_channels(supernet)
            init_quantizers(supernet, data.calibration_images(config.quant_init_images))
        calibration = data.calibration_source(config.bn_images)
        if stored is None and config.start_eval:
            start = start_entry(supernet, data.holdout, calibration, dist)
            history.append(start)
            reporter.note(
                "before training: "
                + "  ".join(f"{name} {value:.2f}%" for name, value in start_accuracies(start))
            )
        parameters = [p for p in supernet.parameters()]
        quantized_weights = wdr_weights(supernet)
        scaler = gradient_scaler(device, config.amp)
        if scaler is not None and stored is not None and "grad_scaler" in stored:
            scaler.load_state_dict(stored["grad_scaler"])

        def save_checkpoint(epoch: int) -> None:
            """``supernet.pt`` and the log after ``epoch`` supernet epochs (main process)."""
            assert out is not None and checkpoint_path is not None
            save_supernet(
                checkpoint_path,
                supernet,
                kind="supernet",
                train_config=config.to_dict(),
                data=config.data_spec().to_dict(),
                history=history,
                epoch=epoch,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                **training_rng_state(device),
                **({} if scaler is None else {"grad_scaler": scaler.state_dict()}),
            )
            write_log(out / LOG_NAME, history)

        if stored is None and config.epochs == 0 and out is not None and dist.is_main:
            save_checkpoint(0)  # the start as it is: evaluated, exported or searched like any
        epoch_task = reporter.add("supernet epochs", config.epochs)
        reporter.update(epoch_task, completed=start_epoch)
        last_epoch = config.epochs
        if stop_after is not None:
            last_epoch = min(last_epoch, start_epoch + stop_after)
        for epoch in range(start_epoch, last_epoch):
            for from_bits, to_bits in stage_openings(config, space, epoch):
                for layer in supernet.elastic_layers().values():
                    layer.quantizer.inherit(from_bits, to_bits)
            open_bits = open_bit_widths(config, space, epoch)
            entry = _train_epoch(
                supernet,
                data,
                config,
                optimizer,
                scheduler,
                parameters,
                quantized_weights,
                open_bits,
                epoch,
                device,
                dist,
                reporter,
                kept_message(
                    out,
                    epoch,
                    dist,
                    stored_fp is not None or (config.fp_epochs > 0 and not config.init),
                ),
                scaler,
            )
            if dist.world_size > 1:
                broadcast_state(supernet)
            form = space.forms[0]
            high_bits = (
                max(b for b in space.w_bits if b in open_bits),
                max(b for b in space.a_bits if b in open_bits),
            )
            low_bits = (
                min(b for b in space.w_bits if b in open_bits),
                min(b for b in space.a_bits if b in open_bits),
            )
            largest = space.uniform(*high_bits, form, arch="largest")
            smallest = space.uniform(*low_bits, form, arch="smallest")
            entry["acc_largest"] = epoch_accuracy(
                supernet, largest, data.holdout, calibration, dist
            )
            entry["acc_smallest"] = epoch_accuracy(
                supernet, smallest, data.holdout, calibration, dist
            )
            entry["open_bits"] = list(open_bits)
            if on_epoch is not None:
                on_epoch(EpochReport(entry, supernet, data, epoch))
            history.append(entry)
            if out is not None and dist.is_main:
                save_checkpoint(epoch + 1)
            reporter.update(
                epoch_task,
                advance=1,
                status=f"W{high_bits[0]}A{high_bits[1]} {entry['acc_largest']:.2f}%  "
                f"W{low_bits[0]}A{low_bits[1]} {entry['acc_smallest']:.2f}%",
            )
            if dist.world_size > 1:
                torch.distributed.barrier()
    supernet.set_subnet(None)
    supernet.eval()
    return TrainResult(supernet, history, checkpoint_path, data)


def _train_epoch(
    supernet: Supernet,
    data: DataBundle,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    parameters: list[nn.Parameter],
    quantized_weights: list[torch.Tensor],
    open_bits: Sequence[int],
    epoch: int,
    device: torch.device,
    dist: Distributed,
    reporter: Progress,
    kept: str = NOTHING_KEPT,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, Any]:
    """One epoch of sandwich steps; returns the epoch's mean loss terms.

    ``kept`` says what a divergence leaves on disk (for its message). The loss terms are
    read back one step late and summed on the host (:class:`LaggedLosses`): a step reads one
    value (its finiteness flag), whatever the number of layers.
    """
    space = supernet.space
    supernet.train()
    losses_read = LaggedLosses.for_device(
        lambda terms, step: check_finite(terms, epoch, step, dist, kept), device
    )
    start = time.perf_counter()
    use_wdr = (config.wdr_skew_weight > 0 or config.wdr_kurtosis_weight > 0) and quantized_weights
    step_task = reporter.add(
        f"epoch {epoch + 1}", steps_per_epoch(data.train, config.batch_size, dist.world_size)
    )
    for step, (images, labels) in enumerate(data.train.batches(epoch, dist.rank, dist.world_size)):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        # Subnet draws depend only on (seed, epoch, step): every rank draws the same ones and
        # a resumed run draws what the uninterrupted one would have.
        rng = np.random.default_rng([config.seed, epoch, step])
        subnets = draw_sandwich(
            space, rng, open_bits, forms=config.forms, random_subnets=config.random_subnets
        )
        optimizer.zero_grad(set_to_none=True)
        losses = sandwich_step(
            supernet,
            images,
            labels,
            subnets,
            config,
            quantized_weights if use_wdr else [],
            scaler,
        )
        losses_read.add(losses, step)  # checks the previous step's terms on the device path
        if dist.world_size > 1:
            average_gradients(parameters, dist)
        optimizer_step(optimizer, parameters, config.grad_clip, scaler)
        scheduler.step()
        reporter.update(step_task, advance=1)
    means = losses_read.means(loss_log_key)  # checks the last step's terms
    reporter.remove(step_task)
    supernet.set_subnet(None)
    entry: dict[str, Any] = {"phase": "supernet", "epoch": epoch + 1, **means}
    entry["lr"] = scheduler.get_last_lr()[0]
    entry["seconds"] = time.perf_counter() - start
    return entry
