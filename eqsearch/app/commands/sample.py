"""``eqsearch sample``: measured subnets of a trained supernet (a predictor's training data)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands import common
from eqsearch.app.commands.common import EXIT_OK, add_renamed_option, positive_int
from eqsearch.app.console import make_console

if TYPE_CHECKING:
    from rich.table import Table

    from predictors.samples.collect import SampleRun

HELP = "measure sampled subnets with the supernet (a predictor's training data)"


def register(commands: Any) -> None:
    """Add the ``sample`` subcommand."""
    from eqsearch.app.commands.data_options import add_data_arguments

    sample = commands.add_parser("sample", help=HELP)
    add = sample.add_argument
    add("--supernet", help="a supernet.pt checkpoint")
    add("--subnets", type=positive_int, default=1000, help="distinct subnets over all shards")
    # --n is swallowed by torchrun when it comes before the script's arguments
    add_renamed_option(sample, "--n", "--subnets", dest="subnets", type=positive_int)
    add("--output", help="samples CSV (default: samples.csv beside the checkpoint)")
    add_renamed_option(sample, "--out", "--output", dest="output")
    add(
        "--seed", type=common.seed_int, default=0, help="seed of the draw (a rerun with it resumes)"
    )
    add("--strategy", default="spread", help="spread (over average bits, default) or uniform")
    add("--form-draw", default="global", help="global (one form per subnet) or per_layer")
    add("--shard", help="i/n: evaluate every n-th subnet from the i-th (default: torchrun rank)")
    add("--split", default="holdout", choices=("holdout", "test"), help="images to score on")
    common.add_image_count_arguments(
        sample,
        "images to score on: the held-out training images with --split holdout (the same "
        "as --holdout), a fixed subset of the test split with --split test",
    )
    add(
        "--holdout",
        type=positive_int,
        help="training images to score on (default: the checkpoint's)",
    )
    add_data_arguments(sample)
    add("--device", default="auto", help=common.DEVICE_HELP)
    add("--merge", nargs="+", metavar="SHARD", help="merge these shard files into --output instead")
    common.add_force_argument(sample, "--output of --merge")
    common.add_progress_argument(sample)
    sample.set_defaults(handler=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from eqsearch.app.commands.common import trust_named_factories
    from eqsearch.app.sampling import SampleRequest, sample_checkpoint

    trust_named_factories(args)
    fields = ["supernet", "output", "subnets", "seed", "strategy", "form_draw", "shard", "split"]
    fields += ["bn_images", "val_images", "holdout", "dataset", "data_root", "transforms"]
    fields += ["device", "force"]
    request = SampleRequest(
        **{name: getattr(args, name) for name in fields}, merge=args.merge or ()
    )
    outcome = sample_checkpoint(request, progress=not args.no_progress)
    console = make_console()
    if outcome.run is None:
        console.print(f"merged {outcome.shards} shard files into {outcome.merged}")
    else:
        console.print(_run_table(outcome.run, args.subnets))
    return EXIT_OK


def _run_table(run: SampleRun, subnets: int) -> Table:
    """The samples file, its rows, the rows added now, the seconds (and the merged file)."""
    from rich.table import Table

    table = Table(title="subnet samples")
    table.add_column("file")
    for column in ("rows", "added now", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(str(run.path), str(run.rows), str(run.new_rows), f"{run.seconds:.1f}")
    if run.merged is not None:
        table.add_row(str(run.merged), str(subnets), "(merged)", "")
    return table
