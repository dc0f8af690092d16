"""The ``eqsearch`` command line: thin commands over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Parser,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    bits_pair,
    finite_float,
    int_list,
    load_config_argument,
    non_negative_int,
    positive_int,
    seed_int,
)
from eqsearch.app.console import make_console, print_frame, status
from eqsearch.errors import InputError
from eqsearch.factories import (
    is_reference,
    locate_module,
    parse_reference,
    trust_factories,
    trust_scope,
)
from eqsearch.launcher import quiet_native_logs
from eqsearch.space.spec import SPACE_FLAGS

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace as ElasticSpaceType
    from eqsearch.space import QuantForm as QuantFormType
    from supernet.tracking import RunTracker as RunTrackerType
    from supernet.train import TrainConfig as TrainConfigType

DEBUG_VARIABLE = "EQSEARCH_DEBUG"
TRUST_FLAG = "--trust-model"
TRUST_DATASET_FLAG = "--trust-dataset"

OPENMP_WAIT_VARIABLE = "OMP_WAIT_POLICY"

# Modules of eqsearch/app/commands/ with a `register(commands)` function, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "search",
    "strategies",
    "export",
    "predictors",
    "study",
    "runtime",
    "latency",
    "inspect",
)

# -- commands ------------------------------------------------------------------------------


def _cmd_models(args: argparse.Namespace) -> int:
    from supernet.models import MODELS, plugin_models
    from supernet.quantizers import QUANTIZERS

    table = Table(title="Registered models")
    for column in ("name", "default image size", "description"):
        table.add_column(column)
    for entry in MODELS.values():
        table.add_row(entry.name, str(entry.image_size), entry.description)
    for name, reference in sorted(plugin_models().items()):
        table.add_row(name, "", f"installed package: {reference}")
    console = make_console()
    console.print(table)
    console.print(f"quantizers: {', '.join(sorted(QUANTIZERS))}")
    console.print("any other model: --model package.module:factory (see the README)")
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


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", required=True, help="run directory (supernet.pt, fp.pt, train_log.jsonl)")
    add("--config", help="a TrainConfig JSON file; flags override its values")
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
    add("--model", help="registered model (eqsearch models); default lenet5")
    add(
        "--dataset",
        help="mnist5k (default), digits, cifar10, imagenet, imagefolder, or a factory "
        "package.module:function or path/to/file.py:function returning (train, val) datasets",
    )
    add("--data-root", help="directory of cifar10/imagenet/imagefolder data (never downloaded)")
    add("--image-size", type=positive_int, help="input size for ImageFolder data")
    add(
        "--transforms",
        help="image transform preset: imagenet, cifar or none (images as they are; default: "
        "the dataset's own)",
    )
    add("--quantizer", help="registered quantizer (lsq)")
    add("--w-bits", type=int_list, help="elastic weight bits, e.g. 2-8 or 2,4,8")
    add("--a-bits", type=int_list, help="elastic activation bits")
    add("--granularity", type=lambda t: tuple(t.split(",")), help="channel,tensor")
    add("--w-symmetry", type=_symmetries, help="weight symmetries: sym,asym")
    add("--a-symmetry", type=_symmetries, help="activation symmetries: sym,asym")
    add("--first-last", help="first/last layers: 8/8 (default), fp or elastic")
    add("--epochs", type=positive_int, help="supernet epochs")
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
    add("--lr", type=finite_float, help="peak learning rate (1e-3)")
    add("--weight-decay", type=finite_float, help="weight decay of weight matrices (0)")
    add("--optimizer", help="adam (default), adamw or sgd")
    add("--momentum", type=finite_float, help="SGD momentum (0.9)")
    add(
        "--nesterov",
        action="store_const",
        const=True,
        help="Nesterov momentum (SGD)",
    )
    add(
        "--warmup-epochs",
        type=non_negative_int,
        help="supernet epochs of linear learning-rate warmup (0)",
    )
    add("--lr-schedule", help="cosine (default, per step to 0), step or constant")
    add("--lr-step-epochs", type=positive_int, help="epochs between steps of --lr-schedule step")
    add("--lr-gamma", type=finite_float, help="factor of each step of --lr-schedule step (0.1)")
    add(
        "--start-eval",
        action=argparse.BooleanOptionalAction,
        help="score FP and the highest and lowest uniform subnets before training (default on)",
    )
    add("--grad-clip", type=finite_float, help="clip gradients to ±value")
    add("--schedule", help="joint (EQ-Net) or progressive (OQAT bit inheritance)")
    add("--form-draw", help="global (one form per subnet) or per_layer")
    add("--guidance", help="gpg (default), hard or smooth labels")
    add("--gpg-lambda", type=finite_float, help="λ of GPG: weight of the KL term")
    add("--label-smoothing", type=finite_float, help="of --guidance smooth")
    add("--random-subnets", type=non_negative_int, help="random subnets per sandwich step")
    add("--wdr-skew", type=finite_float, help="weight of WDR's skewness term")
    add("--wdr-kurtosis", type=finite_float, help="weight of WDR's kurtosis term")
    add("--target-kurtosis", type=finite_float, help="K_T of WDR (1.8)")
    add("--quant-init-images", type=positive_int, help="images that set the initial steps")
    add(
        "--calib-images",
        dest="bn_images",
        type=positive_int,
        help="training images that re-estimate the BN statistics before each scoring (1000)",
    )
    add("--bn-images", dest="bn_images", type=positive_int, help=argparse.SUPPRESS)
    add(
        "--holdout",
        type=positive_int,
        help="training images held out to score subnets each epoch (2000)",
    )
    add("--seed", type=seed_int, help="seeds weights, data order and subnet draws")
    add("--device", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    add(
        "--workers",
        type=non_negative_int,
        help="DataLoader workers for folder datasets (default: min(8, cores per local rank))",
    )
    add("--amp", help="mixed precision: none (default), bf16 or fp16 (with a gradient scaler)")
    add(
        "--compile",
        action="store_const",
        const=True,
        help="fuse the quantizers' element-wise work with torch.compile (GPUs)",
    )


def _train_config(args: argparse.Namespace) -> TrainConfigType:
    from dataclasses import replace

    from supernet.train import TrainConfig

    overrides = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.resume:
        from supernet.checkpoint import load_checkpoint
        from supernet.train import resumable_checkpoint, stored_train_config

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
    base = TrainConfig.from_json(args.config) if args.config else TrainConfig()
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

    _trust_named_factories(args)
    if args.force and args.resume:
        raise UsageError("--resume continues the run in --out and --force replaces it; give one")
    from supernet.tracking import check_log_text

    backends = check_log_text(args.log)  # a missing package is named before any work
    check_output_directory(args.out)
    from supernet.train import TrainingDiverged, train_supernet

    config = _train_config(args)
    # One run per directory: the main process holds it from here (the other ranks of a
    # distributed run write nothing).
    with hold_directory(args.out) if _is_main_process() else nullcontext():
        if args.force:
            from supernet.train import previous_run_files

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


def _trust_named_factories(args: argparse.Namespace) -> None:
    """Trust the ``--model``/``--dataset`` factories named on the line (a file naming them
    later is then allowed); a missing module is named before torch is imported."""
    for name, what in ((getattr(args, "model", None), "model"), (args.dataset, "dataset")):
        if name is not None and is_reference(name):
            locate_module(parse_reference(name, what=f"{what} factory"))
            trust_factories([name])


def _print_start(console: Any, history: list[dict[str, Any]]) -> None:
    """The epoch-0 scores of a run's log, on one line (nothing where it has none)."""
    from supernet.train import start_accuracies

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

    from supernet.tracking import RunTracker, logged_keys
    from supernet.train import LOG_NAME

    skip = logged_keys(Path(args.out) / LOG_NAME) if args.resume else set()
    return RunTracker(backends, args.out, config.to_dict(), skip=skip, resume=args.resume)


def _is_main_process() -> bool:
    from eqsearch.launcher import launch_environment

    return launch_environment()[0] == 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from eqsearch.files import atomic_write_text, check_output_file

    if args.config and (args.uniform or args.form is not None):
        given = "--uniform" if args.uniform else "--form"
        raise UsageError(f"--config holds its own bits and forms; drop {given}")
    if args.form is not None and not args.form.strip():
        raise UsageError("--form is empty; give forms such as channel-sym-sym,tensor-asym-asym")
    if args.json:
        check_output_file(args.json, kind="table", force=args.force, flag="--json")
    _trust_named_factories(args)
    from supernet.evaluate import PAPER_FORMS, evaluate_configs, load_for_evaluation, uniform_table

    supernet, checkpoint, evaluation = load_for_evaluation(
        args.supernet,
        data_root=args.data_root,
        split=args.split,
        bn_images=args.bn_images,
        val_images=args.val_images,
        device=args.device,
        dataset=args.dataset,
        transforms=args.transforms,
    )
    console = make_console()
    if checkpoint.get("kind") == "fp":
        from supernet.evaluate import supernet_oracle

        accuracy = supernet_oracle(supernet, evaluation).score(None)
        console.print(
            f"full-precision model (before quantization-aware training): top-1 "
            f"{accuracy:.2f}% on the {evaluation.split} split ({len(evaluation.scoring)} images)"
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
        with status(
            console, "evaluating uniform subnets (BN re-calibrated each)", not args.no_progress
        ):
            frame = uniform_table(supernet, evaluation, forms=forms)
        print_frame(
            console,
            frame,
            f"top-1 % of uniform subnets, {evaluation.split} split "
            f"({len(evaluation.scoring)} images)",
        )
    if args.json:
        atomic_write_text(args.json, frame.to_json(orient="index", indent=2) + "\n")
    return EXIT_OK


def _eval_forms(args: argparse.Namespace, space: ElasticSpaceType) -> list[QuantFormType] | None:
    from eqsearch.space import QuantForm

    if args.form:
        return [space.check_form(QuantForm.parse(text)) for text in args.form.split(",")]
    return None


# -- parser --------------------------------------------------------------------------------


def build_parser(*, study_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser of every subcommand.

    ``study_options=False`` leaves out the options of the studies, whose modules import
    torch: ``eqsearch --help`` and every other command then parse without it.
    """
    from eqsearch import __version__

    parser = Parser(
        prog="eqsearch",
        description="Elastic quantization supernets and NSGA-II mixed-precision search.",
    )
    parser.add_argument("--version", action="version", version=f"eqsearch {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"print the traceback of an unexpected failure (or set {DEBUG_VARIABLE}=1)",
    )
    parser.add_argument(
        TRUST_FLAG,
        action="append",
        metavar="MODULE:FUNCTION",
        help="let checkpoints and config files name this model factory (code they name is "
        "never run otherwise); taken anywhere on the line, repeatable",
    )
    parser.add_argument(
        TRUST_DATASET_FLAG,
        action="append",
        metavar="MODULE:FUNCTION",
        help="the same for a dataset factory",
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
    evaluate.add_argument(
        "--split",
        default="test",
        choices=("test", "holdout"),
        help="images to score on: the test split (default) or the held-out training images",
    )
    evaluate.add_argument("--data-root", help="override the data root stored in the checkpoint")
    evaluate.add_argument(
        "--dataset",
        help="override the checkpoint's dataset: a registered one or a factory "
        "package.module:function (e.g. for a run trained on DataLoaders in Python)",
    )
    evaluate.add_argument(
        "--transforms", help="override the checkpoint's transform preset: imagenet, cifar or none"
    )
    add_image_count_arguments(
        evaluate, "images of --split to score on: a fixed subset (default: all of them)"
    )
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.add_argument("--json", help="also write the table as JSON")
    add_force_argument(evaluate, "--json file")
    add_progress_argument(evaluate)
    evaluate.set_defaults(handler=_cmd_eval)

    # Command groups that live in their own modules; each adds its subparsers.
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"eqsearch.app.commands.{module_name}")
        if module_name == "study":
            module.register(commands, with_options=study_options)
        else:
            module.register(commands)
    return parser


def prefer_passive_openmp(load: float | None = None, cores: int | None = None) -> None:
    """On a busy machine, let torch's idle OpenMP threads sleep at once instead of spinning,
    unless the user chose a policy (``OMP_WAIT_POLICY``); it takes effect for torch imported
    after it.

    libgomp spins up to 300,000 rounds at every barrier before it sleeps. On a machine whose
    cores other processes share, a spinning thread holds the core its partner waits for: a
    LeNet-5 sandwich step on 2 threads took 240 ms instead of 100 ms at load 6 on 2 cores
    (``benchmarks/openmp_wait.py``; the demo's training 745 s instead of 131 s). On a quiet
    machine spinning is the faster policy (a ResNet-20 W4/A4 step 181 ms spinning, 242 ms
    passive), so the policy follows the load: passive only when the one-minute load average
    (``load``) reaches the cores this process may use (``cores``). Neither changes a result:
    the work is divided the same way.
    """
    if OPENMP_WAIT_VARIABLE in os.environ:
        return
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if load >= cores:
        os.environ[OPENMP_WAIT_VARIABLE] = "PASSIVE"


def print_safely() -> None:
    """Let standard output and error print any path: characters the terminal's encoding
    lacks (``PYTHONIOENCODING=ascii``, a C locale) are written as ``\\xf6`` escapes, where
    Python would fail after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    print_safely()
    prefer_passive_openmp()  # before any command imports torch
    arguments = list(sys.argv[1:] if argv is None else argv)
    # --debug is taken anywhere on the line, before or after the command
    debug = "--debug" in arguments or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    arguments = [argument for argument in arguments if argument != "--debug"]
    quiet_native_logs(debug)  # before any command imports torch
    try:
        with trust_scope():
            arguments = _take_trusted_factories(arguments)
            parser = build_parser(study_options="study" in arguments)
            args = parser.parse_args(arguments)
            args.debug = debug
            handler: Command = args.handler
            return handler(args)
    except (UsageError, InputError) as error:
        # bad input; any other ValueError is a bug and falls through to the last handler
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        # a full disk, a vanished directory, an I/O fault: the files finished before it
        # are intact (every write is atomic); say what failed, no traceback
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:
        if debug:
            traceback.print_exc()
        else:
            print(
                f"error: unexpected {type(error).__name__}: {_one_line(error)[:300]} "
                f"(this is a bug; --debug or {DEBUG_VARIABLE}=1 shows the traceback)",
                file=sys.stderr,
            )
        return EXIT_FAILURE


def _take_trusted_factories(arguments: list[str]) -> list[str]:
    """Trust every ``--trust-model REF`` and ``--trust-dataset REF`` on the line (before or
    after the command) and return the line without them.

    Raises:
        UsageError: the flag without a reference, or a malformed reference.
    """
    rest: list[str] = []
    trusted: list[str] = []
    items = iter(arguments)
    for argument in items:
        if argument == "--":
            rest += [argument, *items]
            break
        flag = argument.split("=", 1)[0]
        if flag not in (TRUST_FLAG, TRUST_DATASET_FLAG):
            rest.append(argument)
            continue
        what = "model factory" if flag == TRUST_FLAG else "dataset factory"
        if argument == flag:
            value = next(items, None)
            if value is None or value.startswith("-"):
                raise UsageError(f"{flag} takes a {what}: package.module:function")
        else:
            value = argument.split("=", 1)[1]
        try:
            trusted.append(parse_reference(value, what=what).text)
        except InputError as error:
            raise UsageError(f"{flag}: {error}") from None
    trust_factories(trusted)
    return rest


def _one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages of libraries are joined)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


if __name__ == "__main__":
    raise SystemExit(main())
