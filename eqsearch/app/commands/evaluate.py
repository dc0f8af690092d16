"""``eqsearch eval``: subnets' accuracy on a checkpoint's data (uniform bits by default)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    bits_pair,
    load_config_argument,
    trust_named_factories,
)
from eqsearch.app.commands.data_options import add_data_arguments
from eqsearch.app.console import make_console, print_frame, status

if TYPE_CHECKING:
    from eqsearch.space import ElasticSpace as ElasticSpaceType
    from eqsearch.space import QuantForm as QuantFormType


def _cmd_eval(args: argparse.Namespace) -> int:
    from eqsearch.files import atomic_write_text, check_output_file

    if args.config and (args.uniform or args.form is not None):
        given = "--uniform" if args.uniform else "--form"
        raise UsageError(f"--config holds its own bits and forms; drop {given}")
    if args.form is not None and not args.form.strip():
        raise UsageError("--form is empty; give forms such as channel-sym-sym,tensor-asym-asym")
    if args.json:
        check_output_file(args.json, kind="table", force=args.force, flag="--json")
    trust_named_factories(args)
    if args.model is not None:
        return _eval_weights(args)
    from supernet.evaluation.evaluate import (
        PAPER_FORMS,
        evaluate_configs,
        load_for_evaluation,
        uniform_table,
    )

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
        from supernet.evaluation.evaluate import supernet_oracle

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


def _eval_weights(args: argparse.Namespace) -> int:
    """``eval --model``: a plain full-precision state_dict scored on ``--dataset``, with its
    own BN statistics and with them re-calibrated; nothing is quantized."""
    for flag, value in (("--uniform", args.uniform), ("--config", args.config)):
        if value:
            raise UsageError(f"--model scores full-precision weights only; drop {flag}")
    if args.form is not None:
        raise UsageError("--model scores full-precision weights only; drop --form")
    if args.dataset is None:
        raise UsageError("--model reads weights that record no data; give --dataset")
    from eqsearch.files import atomic_write_text
    from supernet.evaluation.evaluate import (
        fp_accuracy,
        load_weights_for_evaluation,
        supernet_oracle,
    )

    supernet, evaluation = load_weights_for_evaluation(
        args.supernet,
        model=args.model,
        dataset=args.dataset,
        data_root=args.data_root,
        split=args.split,
        bn_images=args.bn_images,
        val_images=args.val_images,
        device=args.device,
        transforms=args.transforms,
    )
    own = fp_accuracy(supernet, evaluation.scoring)
    recalibrated = supernet_oracle(supernet, evaluation).score(None)
    console = make_console()
    console.print(
        f"full-precision weights {args.supernet} ({args.model}) on the {evaluation.split} "
        f"split ({len(evaluation.scoring)} images): top-1 {own:.2f}% with their own BN "
        f"statistics, {recalibrated:.2f}% with BN re-calibrated on "
        f"{len(evaluation.calibration)} training images"
    )
    if args.json:
        result = {"accuracy": own, "accuracy_bn_recalibrated": recalibrated}
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return EXIT_OK


def _eval_forms(args: argparse.Namespace, space: ElasticSpaceType) -> list[QuantFormType] | None:
    from eqsearch.space import QuantForm

    if args.form:
        return [space.check_form(QuantForm.parse(text)) for text in args.form.split(",")]
    return None


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
    evaluate.add_argument("--config", help="a config JSON file, or pareto.json#INDEX")
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
    evaluate.set_defaults(handler=_cmd_eval)
