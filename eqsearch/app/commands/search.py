"""``eqsearch nsga`` (the mixed-precision search) and ``eqsearch demo`` (the whole pipeline)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    finite_float,
    non_negative_int,
    positive_int,
    seed_int,
)
from eqsearch.app.commands.searching import (
    NoOracle,
    add_bits_budget_arguments,
    add_front_output_arguments,
    add_latency_arguments,
    add_objective_arguments,
    annotate_front,
    budget_message,
    front_output_directory,
    latency_table,
    load_holdout_supernet,
    objective_names,
    predictor_oracle,
    read_supernet_checkpoint,
    verify_latency,
    with_predictor_source,
)
from eqsearch.app.console import front_table, generation_bar, make_console, print_frame, status
from eqsearch.app.measure import verify_front

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.problem import SearchProblem


def register(commands: Any) -> None:
    """Add the ``nsga`` and ``demo`` subcommands."""
    from eqsearch.app.commands.refine import add_refine_arguments
    from eqsearch.engines import ENGINES

    nsga = commands.add_parser(
        "nsga", help="NSGA-II search for mixed-precision configs on the Pareto front"
    )
    add = nsga.add_argument
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add_bits_budget_arguments(nsga)
    add("--bitops", type=finite_float, help="budget: BitOPs per image")
    add("--size", type=finite_float, help="budget: packed model size in bytes")
    add("--macs", type=finite_float, help="budget: MACs per image of a joint space's architecture")
    add_latency_arguments(nsga)
    add_objective_arguments(nsga)
    add("--forms-per-layer", action="store_true", help="with --target any: a form per layer")
    add("--engine", default="pymoo", choices=ENGINES, help="NSGA-II implementation (default pymoo)")
    add("--predictor", help="a fitted predictor (default: the one saved beside the checkpoint)")
    add(
        "--oracle",
        default="predictor",
        choices=("predictor", "supernet"),
        help="where accuracy comes from: the predictor (default) or the supernet itself",
    )
    add("--population", type=positive_int, default=100, help="individuals per generation")
    add("--generations", type=non_negative_int, default=500, help="generations after the first")
    add("--seed", type=seed_int, default=0, help="the search is a function of it")
    add(
        "--verify",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="measure K front configs on the supernet",
    )
    add_refine_arguments(nsga)
    add_front_output_arguments(nsga)
    add("--device", default="auto", help=f"for --oracle supernet and --verify: {DEVICE_HELP}")
    add_image_count_arguments(
        nsga,
        "for --oracle supernet and --verify: held-out training images that score subnets "
        "(default: the checkpoint's holdout)",
    )
    add_progress_argument(nsga)
    nsga.set_defaults(handler=_cmd_nsga)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on embedded MNIST digits (a few minutes on a CPU)"
    )
    demo.add_argument("--out", default="eqsearch-demo", help="directory of every demo file")
    demo.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests)")
    add_force_argument(demo, "files at the demo's names in a directory that is not a demo's")
    add_progress_argument(demo)
    demo.add_argument("--seed", type=seed_int, default=0, help="seeds every stage")
    demo.add_argument(
        "--model",
        choices=("lenet5", "oqa_mbv3_tiny"),
        default="lenet5",
        help="lenet5 on MNIST-5k (bits and forms), or oqa_mbv3_tiny on the 8×8 digits (the "
        "joint architecture × bits space under a BitOPs budget)",
    )
    demo.set_defaults(handler=_cmd_demo)


# -- nsga ----------------------------------------------------------------------------------


def _check_counts(args: argparse.Namespace) -> None:
    if args.population < 2:
        raise UsageError(f"--population must be at least 2; got {args.population}")
    if args.generations < 0:
        raise UsageError(f"--generations must be >= 0; got {args.generations}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; got {args.seed}")
    if args.verify < 0:
        raise UsageError(f"--verify must be >= 0; got {args.verify}")


def _cmd_nsga(args: argparse.Namespace) -> int:
    from eqsearch.app.commands.refine import check_refine_arguments
    from eqsearch.locks import hold_directory

    _check_counts(args)
    objectives = objective_names(args.objectives)
    check_refine_arguments(args, objectives)
    out = front_output_directory(args)
    with hold_directory(out, what="the output directory"):
        return _nsga(args, objectives, out)


def _nsga(args: argparse.Namespace, objectives: list[str], out: Path) -> int:
    from eqsearch.app.commands.refine import run_refinement
    from eqsearch.engines import search_memory_bytes
    from eqsearch.problem import make_problem
    from eqsearch.resources import check_memory

    checkpoint, space = read_supernet_checkpoint(args, "search a supernet.pt")
    latency = latency_table(args, objectives, space)
    settings: dict[str, Any] = {
        "objectives": objectives,
        "w_bits": args.w_bits,
        "a_bits": args.a_bits,
        "bitops": args.bitops,
        "size_bytes": args.size,
        "macs": args.macs,
        "target": args.target,
        "forms_per_layer": args.forms_per_layer,
        "latency": latency,
        "latency_ms": args.latency_ms,
    }
    try:
        problem = make_problem(space, NoOracle(), **settings)
    except ValueError as error:
        raise UsageError(budget_message(error)) from None
    if args.forms_per_layer and len(problem.layout.forms) == 1:
        raise UsageError(
            f"--forms-per-layer chooses among several forms, but --target {args.target} allows "
            f"one ({problem.layout.forms[0]}); use --target any"
        )
    check_memory(
        search_memory_bytes(problem, args.population, args.generations),
        f"--population {args.population} with --generations {args.generations}",
    )
    console = make_console()
    if args.refine:
        if latency is not None:
            raise UsageError("--refine does not take a latency objective or budget yet")
        return run_refinement(args, space, settings, checkpoint, out, console)
    supernet_oracle: AccuracyOracle | None = None
    if args.oracle == "supernet" or args.verify:
        supernet_oracle = _load_supernet_oracle(args, console)
    if "accuracy" not in objectives:
        oracle: AccuracyOracle = NoOracle()
    elif args.oracle == "supernet":
        assert supernet_oracle is not None
        oracle = supernet_oracle
    else:
        oracle = predictor_oracle(args, space, console)
    problem = make_problem(space, oracle, **settings)
    front = _search(problem, args, console)
    front = with_predictor_source(annotate_front(front, checkpoint, args), oracle)
    if latency is not None:
        front = front.with_column("latency_ms", latency.predict(front.batch))
    tau = None
    if args.verify:
        assert supernet_oracle is not None
        with status(
            console,
            f"measuring {min(args.verify, len(front))} configs on the supernet",
            not args.no_progress,
        ):
            front, tau = verify_front(front, supernet_oracle, args.verify)
        if latency is not None:
            front = verify_latency(front, args, latency, console)
    paths = front.write(out)
    print_frame(console, front_table(front), _title(front, args))
    if tau is not None:
        console.print(
            f"predicted vs measured accuracy of the verified configs: Kendall τ {tau:.2f}"
        )
    console.print("wrote " + ", ".join(str(path) for path in paths))
    return EXIT_OK


def _load_supernet_oracle(args: argparse.Namespace, console: Console) -> AccuracyOracle:
    from supernet.evaluation.evaluate import supernet_oracle

    return supernet_oracle(*load_holdout_supernet(args, console, "evaluation images"))


def _search(problem: SearchProblem, args: argparse.Namespace, console: Console) -> ParetoFront:
    from eqsearch.engines import nsga2

    description = f"NSGA-II ({args.engine}) generations"
    with generation_bar(console, description, args.generations, not args.no_progress) as bar:
        return nsga2(
            problem,
            engine=args.engine,
            population=args.population,
            generations=args.generations,
            seed=args.seed,
            progress=bar,
        )


def _title(front: ParetoFront, args: argparse.Namespace) -> str:
    return f"Pareto front: {len(front)} configs ({front.info.get('title', '')})"


# -- demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from eqsearch.app.demo import run_demo
    from eqsearch.app.demo_settings import DemoSettings

    if args.model == "lenet5":
        settings = DemoSettings.quick(args.seed) if args.quick else DemoSettings(seed=args.seed)
    else:
        settings = DemoSettings.joint(args.seed, quick=args.quick)
    run_demo(
        Path(args.out),
        settings,
        console=make_console(),
        progress=not args.no_progress,
        force=args.force,
    )
    return EXIT_OK
