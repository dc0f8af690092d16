"""``eqsearch train``: a supernet trained from a registered or named model and dataset."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    DefaultsFormatter,
    UsageError,
    add_progress_argument,
    finite_float,
    int_list,
    non_negative_int,
    positive_int,
    seed_int,
    trust_named_factories,
)
from eqsearch.app.console import make_console
from eqsearch.space.spec import SPACE_FLAGS

if TYPE_CHECKING:
    from supernet.training.config import TrainConfig as TrainConfigType
    from supernet.training.tracking import RunTracker as RunTrackerType


# TrainConfig fields that `eqsearch train` exposes as flags: flag destination → field (the
# space's fields set TrainConfig.space through TrainConfig's init-only variables of their names).
_TRAIN_FLAGS = {
    "model": "model",
    "dataset": "dataset",
    "data_root": "data_root",
    "image_size": "image_size",
    "transforms": "transforms",
    **SPACE_FLAGS,  # the space description's fields (TrainConfig.space)
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
    "bn_images": "bn_images",
    "holdout": "holdout",
    "seed": "seed",
    "device": "device",
    "workers": "workers",
    "amp": "amp",
    "compile": "compile",
}


_SYMMETRY_NAMES = {True: "sym", False: "asym"}


@functools.cache
def config_default_text(dest: str) -> str | None:
    """TrainConfig's default of the train flag with destination ``dest``, spelled as the flag
    takes it (``2,3,4``, ``0.001``, ``on``); None where there is none to show (not a
    TrainConfig field, None, or an off switch)."""
    field = _TRAIN_FLAGS.get(dest)
    if field is None:
        return None
    from supernet.training.config import TrainConfig

    value = getattr(TrainConfig(), field)
    if value is None or value is False:
        return None
    if value is True:
        return "on"
    if isinstance(value, tuple):
        return ",".join(_SYMMETRY_NAMES[v] if isinstance(v, bool) else str(v) for v in value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


class _TrainHelpFormatter(DefaultsFormatter):
    """``train --help`` with TrainConfig's defaults: the flags default to None so that a
    config file can set what no flag gives, and the help shows what a run then uses."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        shown = config_default_text(action.dest) if action.option_strings else None
        if not text or text is argparse.SUPPRESS or shown is None:
            return text
        return f"{text} (default: {shown.replace('%', '%%')})"


def _symmetries(text: str) -> tuple[bool, ...]:
    mapping = {"sym": True, "asym": False}
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p not in mapping for p in parts):
        raise UsageError(f"expected symmetries like 'sym,asym'; got {text!r}")
    return tuple(mapping[p] for p in parts)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", required=True, help="run directory (supernet.pt, fp.pt, train_log.jsonl)")
    add(
        "--config",
        help="a TrainConfig file, JSON or YAML (.yaml/.yml); flags override its values",
    )
    add("--resume", action="store_true", help="continue the run stored in --out")
    parser.add_argument(
        "--force",
        action="store_true",
        help="start a new run over the eqsearch train run in --out (its checkpoints and log "
        "are replaced; never files that another program wrote)",
    )
    add_progress_argument(parser)
    add(
        "--log",
        metavar="BACKENDS",
        help="where the per-epoch log goes besides train_log.jsonl: tensorboard, mlflow or "
        "both, comma-separated, into the run directory (default: jsonl only)",
    )
    add(
        "--model",
        help="registered model (eqsearch models) or a factory package.module:function or "
        "path/to/file.py:function",
    )
    add(
        "--dataset",
        help="mnist5k, digits, cifar10, imagenet, imagefolder, or a factory "
        "package.module:function or path/to/file.py:function returning (train, val) datasets",
    )
    add("--data-root", help="directory of cifar10/imagenet/imagefolder data (never downloaded)")
    add("--image-size", type=positive_int, help="input size for ImageFolder data")
    add(
        "--transforms",
        help="image transform preset: imagenet, cifar or none (images as they are; default: "
        "the dataset's own)",
    )
    add("--quantizer", help="registered quantizer: lsq or n2uq")
    add("--w-bits", type=int_list, help="elastic weight bits, e.g. 2-8 or 2,4,8")
    add("--a-bits", type=int_list, help="elastic activation bits")
    add(
        "--granularity",
        type=lambda t: tuple(t.split(",")),
        help="weight granularities: channel,tensor (default: every one the quantizer supports)",
    )
    add(
        "--w-symmetry",
        type=_symmetries,
        help="weight symmetries: sym,asym (default: every one the quantizer supports)",
    )
    add(
        "--a-symmetry",
        type=_symmetries,
        help="activation symmetries: sym,asym (default: every one the quantizer supports)",
    )
    add("--first-last", help="first/last layers: pinned bits such as 8/8, fp or elastic")
    add(
        "--epochs",
        type=non_negative_int,
        help="supernet epochs; 0 scores and stores the start (--init, --pretrained or "
        "--fp-epochs) without a supernet step",
    )
    add(
        "--fp-epochs",
        type=non_negative_int,
        help="full-precision pretraining epochs before the supernet",
    )
    add("--init", help="start from this full-precision checkpoint or state_dict")
    add(
        "--init-skip-head",
        action="store_const",
        const=True,
        help="leave the classifier out of --init (weights for another number of classes)",
    )
    add("--pretrained", action="store_const", const=True, help="torchvision weights (local)")
    add("--batch-size", type=positive_int, help="images per step")
    add("--lr", type=finite_float, help="peak learning rate")
    add("--weight-decay", type=finite_float, help="weight decay of weight matrices")
    add("--optimizer", help="adam, adamw or sgd")
    add("--momentum", type=finite_float, help="SGD momentum")
    add(
        "--nesterov",
        action="store_const",
        const=True,
        help="Nesterov momentum (SGD)",
    )
    add(
        "--warmup-epochs",
        type=non_negative_int,
        help="supernet epochs of linear learning-rate warmup",
    )
    add("--lr-schedule", help="cosine (per step to 0), step or constant")
    add("--lr-step-epochs", type=positive_int, help="epochs between steps of --lr-schedule step")
    add("--lr-gamma", type=finite_float, help="factor of each step of --lr-schedule step")
    add(
        "--start-eval",
        action=argparse.BooleanOptionalAction,
        help="score FP and the highest and lowest uniform subnets before training",
    )
    add("--grad-clip", type=finite_float, help="clip gradients to ±value")
    add("--schedule", help="joint (EQ-Net) or progressive (OQAT bit inheritance)")
    add("--form-draw", help="global (one form per subnet) or per_layer")
    add("--guidance", help="gpg, hard or smooth labels")
    add("--gpg-lambda", type=finite_float, help="λ of GPG: weight of the KL term")
    add("--label-smoothing", type=finite_float, help="of --guidance smooth")
    add("--random-subnets", type=non_negative_int, help="random subnets per sandwich step")
    add("--wdr-skew", type=finite_float, help="weight of WDR's skewness term")
    add("--wdr-kurtosis", type=finite_float, help="weight of WDR's kurtosis term")
    add("--target-kurtosis", type=finite_float, help="K_T of WDR")
    add("--quant-init-images", type=positive_int, help="images that set the initial steps")
    add(
        "--calib-images",
        dest="bn_images",
        type=positive_int,
        help="training images that re-estimate the BN statistics before each scoring",
    )
    add("--bn-images", dest="bn_images", type=positive_int, help=argparse.SUPPRESS)
    add(
        "--holdout",
        type=positive_int,
        help="training images held out to score subnets each epoch",
    )
    add("--seed", type=seed_int, help="seeds weights, data order and subnet draws")
    add("--device", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add(
        "--workers",
        type=non_negative_int,
        help="DataLoader workers for folder datasets (default: min(8, cores per local rank))",
    )
    add("--amp", help="mixed precision: none, bf16, or fp16 with a gradient scaler")
    add(
        "--compile",
        action="store_const",
        const=True,
        help="fuse the quantizers' element-wise work with torch.compile (GPUs)",
    )


def _train_config(args: argparse.Namespace) -> TrainConfigType:
    from dataclasses import replace

    from supernet.training.config import TrainConfig

    overrides = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.resume:
        from supernet.files.checkpoint import load_checkpoint
        from supernet.training.run_files import resumable_checkpoint, stored_train_config

        path = resumable_checkpoint(args.out)
        config = stored_train_config(load_checkpoint(path), path)
        changed = sorted(
            k for k in overrides if k != "device" and overrides[k] != getattr(config, k)
        )
        if changed:
            raise UsageError(
                f"--resume continues {args.out} with its stored settings; drop "
                f"{', '.join('--' + k.replace('_', '-') for k in changed)}"
            )
        return replace(config, device=overrides.get("device", config.device))
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    return replace(base, **overrides)


def _start_distributed(device_name: str, *, debug: bool = False) -> bool:
    """Join the torchrun process group when launched by torchrun with several processes.

    The launch's variables are checked first (see ``eqsearch.launcher``); the device is
    resolved (``cuda:<LOCAL_RANK>``) before the backend is chosen from it: NCCL for CUDA, gloo
    for the CPU. Waiting for the peers is bounded (``EQSEARCH_RENDEZVOUS_TIMEOUT``, 300 s by
    default); c10d's own log lines are shown only with ``debug``.
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
            raise UsageError(
                f"rank {rank} of {world} could not join its peers within {seconds:g} s "
                f"({(first.strip() or type(error).__name__)[:160]}); "
                f"are all {world} processes started?"
            ) from None
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from eqsearch.files import check_output_directory
    from eqsearch.locks import hold_directory

    trust_named_factories(args)
    if args.force and args.resume:
        raise UsageError("--resume continues the run in --out and --force replaces it; give one")
    from supernet.training.tracking import check_log_text

    backends = check_log_text(args.log)  # a missing package is named before any work
    check_output_directory(args.out)
    from supernet.training.divergence import TrainingDiverged
    from supernet.training.loop import train_supernet

    config = _train_config(args)
    # One run per directory: the main process holds it from here (the other ranks of a
    # distributed run write nothing).
    with hold_directory(args.out) if _is_main_process() else nullcontext():
        if args.force:
            from supernet.training.run_files import previous_run_files

            previous_run_files(args.out)  # refused before any work when not eqsearch train's
        distributed = _start_distributed(config.device, debug=getattr(args, "debug", False))
        tracker = _tracker(backends, args, config) if _is_main_process() else None
        failed = True
        try:
            result = train_supernet(
                config,
                args.out,
                resume=args.resume,
                progress=not args.no_progress,
                force=args.force,
                on_epoch=None if tracker is None else lambda report: tracker.log(report.entry),
            )
            failed = False
        except TrainingDiverged as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            if tracker is not None:
                if not failed:
                    tracker.log_all(result.history)  # the full-precision epochs among them
                tracker.close(failed=failed)
            if distributed:
                import torch.distributed

                torch.distributed.destroy_process_group()
    if result.history and (not distributed or _is_main_process()):
        last = result.history[-1]
        console = make_console()
        _print_start(console, result.history)
        table = Table(title=f"{config.model} on {config.dataset}: epoch {last['epoch']}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in last.items():
            if isinstance(value, float):
                table.add_row(key, f"{value:.4g}")
        console.print(table)
        console.print(f"checkpoint: {result.checkpoint}")
    return EXIT_OK


def _print_start(console: Any, history: list[dict[str, Any]]) -> None:
    """The epoch-0 scores of a run's log, on one line (nothing where it has none)."""
    from supernet.training.scoring import start_accuracies

    for entry in history:
        if entry.get("phase") == "start":
            scores = "  ".join(f"{name} {value:.2f}%" for name, value in start_accuracies(entry))
            console.print(f"before training (epoch 0): {scores}")


def _tracker(
    backends: tuple[str, ...], args: argparse.Namespace, config: TrainConfigType
) -> RunTrackerType | None:
    """The TensorBoard / MLflow tracker of a run (None for the JSONL log alone)."""
    if set(backends) <= {"jsonl"}:
        return None
    from pathlib import Path

    from supernet.training.run_files import LOG_NAME
    from supernet.training.tracking import RunTracker, logged_keys

    skip = logged_keys(Path(args.out) / LOG_NAME) if args.resume else set()
    return RunTracker(backends, args.out, config.to_dict(), skip=skip, resume=args.resume)


def _is_main_process() -> bool:
    from eqsearch.launcher import launch_environment

    return launch_environment()[0] == 0


def register(commands: Any) -> None:
    """Add the ``train`` subcommand."""
    train = commands.add_parser(
        "train", help="train an elastic supernet", formatter_class=_TrainHelpFormatter
    )
    _add_train_arguments(train)
    train.set_defaults(handler=_cmd_train)
