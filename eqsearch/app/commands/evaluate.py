"""``eqsearch eval``: subnets' accuracy on a checkpoint's data (uniform bits by default)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    add_renamed_option,
    trust_named_factories,
)
from eqsearch.app.commands.data_options import add_data_arguments
from eqsearch.app.commands.request_args import request_from
from eqsearch.app.console import make_console, print_frame, status

if TYPE_CHECKING:
    from eqsearch.app.evaluating import EvalOutcome, EvalRequest


def _cmd_eval(args: argparse.Namespace) -> int:
    from eqsearch.app.evaluating import EvalRequest, evaluate_checkpoint

    request = request_from(args, EvalRequest)
    trust_named_factories(args)
    console = make_console()
    outcome = evaluate_checkpoint(
        request, spinner=lambda text: status(console, text, not args.no_progress)
    )
    _print_outcome(console, outcome, request)
    return EXIT_OK


def _print_outcome(console: Any, outcome: EvalOutcome, request: EvalRequest) -> None:
    """One line for full-precision scores, else the table of subnets with its title."""
    images = f"the {outcome.split} split ({outcome.images} images)"
    if outcome.kind == "fp":
        console.print(
            "full-precision model (before quantization-aware training): top-1 "
            f"{outcome.accuracy:.2f}% on {images}"
        )
    elif outcome.kind == "weights":
        console.print(
            f"full-precision weights {request.supernet} ({request.model}) on {images}: top-1 "
            f"{outcome.accuracy:.2f}% with their own BN statistics, {outcome.recalibrated:.2f}% "
            f"with BN re-calibrated on {outcome.calibration_images} training images"
        )
    elif outcome.described:
        print_frame(console, outcome.frame, f"{outcome.described} on the {outcome.split} split")
    else:
        title = f"top-1 % of uniform subnets, {outcome.split} split ({outcome.images} images)"
        print_frame(console, outcome.frame, title)


def register(commands: Any) -> None:
    """Add the ``eval`` subcommand."""
    evaluate = commands.add_parser(
        "eval", help="accuracy of subnets (the uniform-bit table by default)"
    )
    evaluate.add_argument(
        "--supernet",
        required=True,
        help="a supernet.pt or fp.pt checkpoint, or with --model a plain full-precision "
        "state_dict (torchvision-style, as train --init reads it)",
    )
    evaluate.add_argument(
        "--model",
        help="score --supernet as full-precision weights of this registered model or factory "
        "on --dataset (nothing quantized)",
    )
    evaluate.add_argument("--uniform", help="W/A bits, e.g. 4/4 (every paper form, or --form)")
    evaluate.add_argument("--subnet", help="the subnet: a config JSON file, or pareto.json#INDEX")
    add_renamed_option(evaluate, "--config", "--subnet", dest="subnet")
    evaluate.add_argument("--form", help="forms such as channel-sym-sym,tensor-asym-asym")
    evaluate.add_argument(
        "--split",
        default="test",
        choices=("test", "holdout"),
        help="images to score on: the test split (default) or the held-out training images",
    )
    add_data_arguments(evaluate)
    add_image_count_arguments(
        evaluate, "images of --split to score on: a fixed subset (default: all of them)"
    )
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.add_argument("--json", help="also write the table as JSON")
    add_force_argument(evaluate, "--json file")
    add_progress_argument(evaluate)
    evaluate.set_defaults(handler=_cmd_eval, field_flags={"calib_images": "--calib-images"})
