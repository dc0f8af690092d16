"""The ``eqsearch`` command line: thin commands over the Python API."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from eqsearch.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Parser,
    UsageError,
    bits_pair,
    int_list,
    load_config_argument,
    make_console,
    print_frame,
)
from eqsearch.space_spec import SPACE_FLAGS

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace as ElasticSpaceType
    from eqsearch.space import QuantForm as QuantFormType
    from supernet.train import TrainConfig as TrainConfigType

# Modules of eqsearch/commands/ with a `register(commands)` function, in help order.
COMMAND_MODULES: tuple[str, ...] = ("search", "export", "predictors", "study")

# -- commands ------------------------------------------------------------------------------


def _cmd_models(args: argparse.Namespace) -> int:
    from supernet.models import MODELS
    from supernet.quantizers import QUANTIZERS

    table = Table(title="Registered models")
    for column in ("name", "default image size", "description"):
        table.add_column(column)
    for entry in MODELS.values():
        table.add_row(entry.name, str(entry.image_size), entry.description)
    console = make_console()
    console.print(table)
    console.print(f"quantizers: {', '.join(sorted(QUANTIZERS))}")
    return EXIT_OK


def _symmetries(text: str) -> tuple[bool, ...]:
    mapping = {"sym": True, "asym": False}
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p not in mapping for p in parts):
        raise UsageError(f"expected symmetries like 'sym,asym'; got {text!r}")
    return tuple(mapping[p] for p in parts)


# TrainConfig fields that `eqsearch train` exposes as flags: flag destination → field (the
# space's fields set TrainConfig.space through TrainConfig's init-only variables of their names).
_TRAIN_FLAGS = {
    "model": "model",
    "dataset": "dataset",
    "data_root": "data_root",
    "image_size": "image_size",
    **SPACE_FLAGS,  # the space description's fields (TrainConfig.space)
    "epochs": "epochs",
    "fp_epochs": "fp_epochs",
    "init": "init",
    "pretrained": "pretrained",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
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
}


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", required=True, help="run directory (supernet.pt, fp.pt, train_log.jsonl)")
    add("--config", help="a TrainConfig JSON file; flags override its values")
    add("--resume", action="store_true", help="continue the run stored in --out")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--model", help="registered model (eqsearch models); default lenet5")
    add("--dataset", help="mnist5k (default), digits, cifar10, imagenet, imagefolder")
    add("--data-root", help="directory of cifar10/imagenet/imagefolder data (never downloaded)")
    add("--image-size", type=int, help="input size for ImageFolder data")
    add("--quantizer", help="registered quantizer (lsq)")
    add("--w-bits", type=int_list, help="elastic weight bits, e.g. 2-8 or 2,4,8")
    add("--a-bits", type=int_list, help="elastic activation bits")
    add("--granularity", type=lambda t: tuple(t.split(",")), help="channel,tensor")
    add("--w-symmetry", type=_symmetries, help="weight symmetries: sym,asym")
    add("--a-symmetry", type=_symmetries, help="activation symmetries: sym,asym")
    add("--first-last", help="first/last layers: 8/8 (default), fp or elastic")
    add("--epochs", type=int, help="supernet epochs")
    add("--fp-epochs", type=int, help="full-precision pretraining epochs before the supernet")
    add("--init", help="start from this full-precision checkpoint or state_dict")
    add("--pretrained", action="store_const", const=True, help="torchvision weights (local)")
    add("--batch-size", type=int)
    add("--lr", type=float, help="Adam learning rate (cosine schedule)")
    add("--weight-decay", type=float)
    add("--grad-clip", type=float, help="clip gradients to ±value")
    add("--schedule", help="joint (EQ-Net) or progressive (OQAT bit inheritance)")
    add("--form-draw", help="global (one form per subnet) or per_layer")
    add("--guidance", help="gpg (default), hard or smooth labels")
    add("--gpg-lambda", type=float, help="λ of GPG: weight of the KL term")
    add("--label-smoothing", type=float)
    add("--random-subnets", type=int, help="random subnets per sandwich step")
    add("--wdr-skew", type=float, help="weight of WDR's skewness term")
    add("--wdr-kurtosis", type=float, help="weight of WDR's kurtosis term")
    add("--target-kurtosis", type=float, help="K_T of WDR (1.8)")
    add("--quant-init-images", type=int)
    add("--bn-images", type=int, help="images for BN re-calibration before each evaluation")
    add("--holdout", type=int, help="training images held out for scoring subnets")
    add("--seed", type=int)
    add("--device", help="auto, cpu, cuda or cuda:N")
    add("--workers", type=int)


def _train_config(args: argparse.Namespace) -> TrainConfigType:
    from dataclasses import replace

    from supernet.train import CHECKPOINT_NAME, TrainConfig

    overrides = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.resume:
        from supernet.checkpoint import load_checkpoint

        stored = load_checkpoint(Path(args.out) / CHECKPOINT_NAME)
        config = TrainConfig.from_dict(stored.get("train_config") or {})
        changed = sorted(
            k for k in overrides if k != "device" and overrides[k] != getattr(config, k)
        )
        if changed:
            raise UsageError(
                f"--resume continues {args.out} with its stored settings; drop "
                f"{', '.join('--' + k.replace('_', '-') for k in changed)}"
            )
        return replace(config, device=overrides.get("device", config.device))
    base = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    return replace(base, **overrides)


def _start_distributed(device: str) -> bool:
    """Join the torchrun process group when launched by torchrun with several processes."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed

    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    from supernet.train import TrainingDiverged, train_supernet

    config = _train_config(args)
    distributed = _start_distributed(config.device)
    try:
        result = train_supernet(config, args.out, resume=args.resume, progress=not args.no_progress)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if distributed:
            import torch.distributed

            torch.distributed.destroy_process_group()
    if result.history and (not distributed or _is_main_process()):
        last = result.history[-1]
        console = make_console()
        table = Table(title=f"{config.model} on {config.dataset}: epoch {last['epoch']}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in last.items():
            if isinstance(value, float):
                table.add_row(key, f"{value:.4g}")
        console.print(table)
        console.print(f"checkpoint: {result.checkpoint}")
    return EXIT_OK


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _cmd_eval(args: argparse.Namespace) -> int:
    from supernet.evaluate import PAPER_FORMS, evaluate_configs, load_for_evaluation, uniform_table

    supernet, checkpoint, evaluation = load_for_evaluation(
        args.supernet,
        data_root=args.data_root,
        split=args.split,
        bn_images=args.bn_images,
        device=args.device,
    )
    console = make_console()
    if checkpoint.get("kind") == "fp":
        from supernet.oracle import subnet_accuracy

        accuracy = subnet_accuracy(
            supernet, None, evaluation.images, evaluation.labels, evaluation.calibration_images
        )
        console.print(
            f"full-precision model (before quantization-aware training): top-1 "
            f"{accuracy:.2f}% on the {evaluation.split} split ({len(evaluation.labels)} images)"
        )
        return EXIT_OK
    forms = _eval_forms(args, supernet.space)
    if args.config:
        configs = [load_config_argument(args.config, supernet.space)]
        frame = evaluate_configs(supernet, evaluation, configs)
        print_frame(console, frame, f"{args.config} on the {evaluation.split} split")
    elif args.uniform:
        w_bits, a_bits = bits_pair(args.uniform)
        chosen = forms or [f for f in PAPER_FORMS if f in supernet.space.forms]
        chosen = chosen or [supernet.space.forms[0]]  # e.g. N2UQ: channel-sym-asym only
        configs = [supernet.space.uniform(w_bits, a_bits, form) for form in chosen]
        frame = evaluate_configs(supernet, evaluation, configs)
        print_frame(console, frame, f"W{w_bits}/A{a_bits} on the {evaluation.split} split")
    else:
        with console.status("evaluating uniform subnets (BN re-calibrated each)"):
            frame = uniform_table(supernet, evaluation, forms=forms)
        print_frame(
            console,
            frame,
            f"top-1 % of uniform subnets, {evaluation.split} split "
            f"({len(evaluation.labels)} images)",
        )
    if args.json:
        frame.to_json(args.json, orient="index", indent=2)
    return EXIT_OK


def _eval_forms(args: argparse.Namespace, space: ElasticSpaceType) -> list[QuantFormType] | None:
    from eqsearch.space import QuantForm

    if args.form:
        return [space.check_form(QuantForm.parse(text)) for text in args.form.split(",")]
    return None


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = Parser(
        prog="eqsearch",
        description="Elastic quantization supernets and NSGA-II mixed-precision search.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    models = commands.add_parser("models", help="list registered models and quantizers")
    models.set_defaults(handler=_cmd_models)

    train = commands.add_parser("train", help="train an elastic supernet")
    _add_train_arguments(train)
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser(
        "eval", help="accuracy of subnets (the uniform-bit table by default)"
    )
    evaluate.add_argument("--supernet", required=True, help="a supernet.pt checkpoint")
    evaluate.add_argument("--uniform", help="W/A bits, e.g. 4/4 (every paper form, or --form)")
    evaluate.add_argument("--config", help="a config JSON file, or pareto.json#INDEX")
    evaluate.add_argument("--form", help="forms such as channel-sym-sym,tensor-asym-asym")
    evaluate.add_argument("--split", default="test", choices=("test", "holdout"))
    evaluate.add_argument("--data-root", help="override the data root stored in the checkpoint")
    evaluate.add_argument("--bn-images", type=int, help="BN re-calibration images")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--json", help="also write the table as JSON")
    evaluate.set_defaults(handler=_cmd_eval)

    # Command groups that live in their own modules; each adds its subparsers.
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"eqsearch.commands.{module_name}")
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Command = args.handler
        return handler(args)
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
