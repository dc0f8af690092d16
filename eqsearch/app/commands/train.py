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
    add_renamed_option,
    finite_float,
    int_list,
    non_negative_int,
    positive_int,
    seed_int,
    trust_named_factories,
)
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console
from eqsearch.app.training import TRAIN_KEYS

if TYPE_CHECKING:
    from eqsearch.app.training import TrainOutcome, TrainRequest
    from supernet.training.config import TrainConfig as TrainConfigType


# Each flag's destination → the TrainConfig field it sets. The destinations are the settings'
# keys (TRAIN_KEYS: --w-choices sets w_choices, as a settings file names it), except that
# --calib-images stores at bn_images as on every command that scores subnets.
_KEY_DESTS = {"calib_images": "bn_images"}
_TRAIN_FLAGS = {_KEY_DESTS.get(key, key): field for key, field in TRAIN_KEYS.items()}


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

    def switch(flag: str, help: str) -> None:
        # on or absent, never off: absent leaves the settings file's value
        add(flag, action="store_const", const=True, help=help)

    add("--out", required=True, help="run directory (supernet.pt, fp.pt, train_log.jsonl)")
    add(
        "--config",
        help="a settings file, JSON or YAML (.yaml/.yml), keyed as the flags are named "
        "(w_choices for --w-choices); flags override its values",
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
    add("--w-choices", type=int_list, help="elastic weight bit widths, e.g. 2-8 or 2,4,8")
    add_renamed_option(parser, "--w-bits", "--w-choices", dest="w_choices", type=int_list)
    add("--a-choices", type=int_list, help="elastic activation bit widths")
    add_renamed_option(parser, "--a-bits", "--a-choices", dest="a_choices", type=int_list)
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
    switch(
        "--init-skip-head",
        "leave the classifier out of --init (weights for another number of classes)",
    )
    switch("--pretrained", "torchvision weights (local)")
    add("--batch-size", type=positive_int, help="images per step")
    add("--lr", type=finite_float, help="peak learning rate")
    add("--weight-decay", type=finite_float, help="weight decay of weight matrices")
    add("--optimizer", help="adam, adamw or sgd")
    add("--momentum", type=finite_float, help="SGD momentum")
    switch("--nesterov", "Nesterov momentum (SGD)")
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
    add_renamed_option(parser, "--bn-images", "--calib-images", dest="bn_images", type=positive_int)
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
    switch("--compile", "fuse the quantizers' element-wise work with torch.compile (GPUs)")


def _request(args: argparse.Namespace) -> TrainRequest:
    """The run the line asks for: the settings given as flags, by their keys."""
    from eqsearch.app.training import TrainRequest

    given = {key: getattr(args, _KEY_DESTS.get(key, key)) for key in TRAIN_KEYS}
    settings = {key: value for key, value in given.items() if value is not None}
    return request_from(
        args,
        TrainRequest,
        settings=settings,
        progress=not args.no_progress,
        debug=getattr(args, "debug", False),
    )


def _train_config(args: argparse.Namespace) -> TrainConfigType:
    """The settings a train line resolves to (the settings file's, the flags over them)."""
    from eqsearch.app.training import train_config

    return train_config(_request(args))


def _cmd_train(args: argparse.Namespace) -> int:
    from eqsearch.app.training import train_run

    trust_named_factories(args)
    outcome = train_run(_request(args))
    if outcome.failed:
        print(f"error: {outcome.failed}", file=sys.stderr)
        return EXIT_FAILURE
    if outcome.history:
        _print_result(outcome)
    return EXIT_OK


def _print_result(outcome: TrainOutcome) -> None:
    """The epoch-0 scores and the last epoch's metrics of a run, and its checkpoint."""
    from supernet.training.scoring import start_accuracies

    console = make_console()
    for entry in outcome.history:
        if entry.get("phase") == "start":
            scores = "  ".join(f"{name} {value:.2f}%" for name, value in start_accuracies(entry))
            console.print(f"before training (epoch 0): {scores}")
    last = outcome.history[-1]
    config = outcome.config
    table = Table(title=f"{config.model} on {config.dataset}: epoch {last['epoch']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in last.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4g}")
    console.print(table)
    console.print(f"checkpoint: {outcome.checkpoint}")


def register(commands: Any) -> None:
    """Add the ``train`` subcommand."""
    train = commands.add_parser(
        "train", help="train an elastic supernet", formatter_class=_TrainHelpFormatter
    )
    _add_train_arguments(train)
    train.set_defaults(handler=_cmd_train)
