"""``eqsearch strategy``: what users pick instead of NSGA-II (ILP, greedy, uniform, random)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    UsageError,
    add_image_count_arguments,
    add_progress_argument,
    positive_int,
    seed_int,
)
from eqsearch.app.console import make_console, print_frame, status

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.problem import SearchProblem
    from eqsearch.strategies import Sensitivities
    from supernet.evaluation.evaluate import EvaluationSet
    from supernet.networks.elastic import Supernet


def register(commands: Any) -> None:
    """Add the ``strategy`` subcommand."""
    from eqsearch.app.commands.searching import (
        add_bits_budget_arguments,
        add_front_output_arguments,
        add_latency_arguments,
        add_objective_arguments,
    )
    from eqsearch.strategies import STRATEGIES
    from eqsearch.strategies.additive import SWEEPS

    parser = commands.add_parser(
        "strategy",
        help="sensitivity ILP (HAWQ-V3), greedy, uniform or random configs as a Pareto front",
    )
    add = parser.add_argument
    add("name", choices=STRATEGIES, help="the strategy")
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add(
        "--sensitivity",
        choices=("hessian", "measured"),
        help="ilp and greedy: HAWQ's Hessian trace × quantization error (default), or the "
        "measured accuracy drop with one layer lowered; cached beside the checkpoint",
    )
    add_bits_budget_arguments(parser)
    add_objective_arguments(parser)
    add_latency_arguments(parser)
    add(
        "--sweep",
        choices=SWEEPS,
        help="ilp and greedy: the cost swept (default: the cost objective's, e.g. bitops)",
    )
    add(
        "--budgets",
        type=positive_int,
        help="ilp: budget levels of the sweep (default 20); greedy: its pick at this many "
        "levels (default: its whole curve)",
    )
    add("--count", type=positive_int, help="random: configs drawn (default 100)")
    add("--seed", type=seed_int, default=0, help="random: seed of the draw; hessian: of the probes")
    add(
        "--images",
        type=positive_int,
        default=256,
        help="hessian sensitivity: scoring images the traces use (default 256)",
    )
    add(
        "--probes",
        type=positive_int,
        default=16,
        help="hessian sensitivity: Hutchinson vectors per batch of 64 images (default 16)",
    )
    add(
        "--oracle",
        default="supernet",
        choices=("supernet", "predictor"),
        help="where the front's accuracy comes from: measured on the supernet (default) or "
        "the predictor beside the checkpoint",
    )
    add("--predictor", help="with --oracle predictor: a fitted predictor file")
    add_front_output_arguments(parser)
    add("--device", default="auto", help=DEVICE_HELP)
    add_image_count_arguments(
        parser,
        "held-out training images that score subnets and the sensitivities "
        "(default: the checkpoint's holdout)",
    )
    add_progress_argument(parser)
    parser.set_defaults(handler=_cmd_strategy)


def _check_flags(args: argparse.Namespace) -> None:
    from eqsearch.strategies import NEEDS_SENSITIVITIES

    needs = args.name in NEEDS_SENSITIVITIES
    misplaced = [
        flag
        for flag, given, applies in (
            ("--sensitivity", args.sensitivity is not None, needs),
            ("--sweep", args.sweep is not None, needs),
            ("--budgets", args.budgets is not None, needs),
            ("--count", args.count is not None, args.name == "random"),
            ("--predictor", args.predictor is not None, args.oracle == "predictor"),
        )
        if given and not applies
    ]
    if misplaced:
        raise UsageError(
            f"{', '.join(misplaced)} does not apply to `eqsearch strategy "
            f"{args.name}` with --oracle {args.oracle}"
        )


def _cmd_strategy(args: argparse.Namespace) -> int:
    from eqsearch.app.commands.searching import front_output_directory, objective_names
    from eqsearch.locks import hold_directory

    _check_flags(args)
    objectives = objective_names(args.objectives)
    out = front_output_directory(args)
    with hold_directory(out, what="the output directory"):
        return _strategy(args, objectives, out)


def _strategy(args: argparse.Namespace, objectives: list[str], out: Path) -> int:
    from eqsearch.app.commands.searching import (
        NoOracle,
        budget_message,
        latency_table,
        load_holdout_supernet,
        predictor_oracle,
        read_supernet_checkpoint,
        with_predictor_source,
    )
    from eqsearch.problem import make_problem
    from eqsearch.strategies import NEEDS_SENSITIVITIES, require_fixed_architecture

    checkpoint, space = read_supernet_checkpoint(args, "use a supernet.pt")
    require_fixed_architecture(space, f"the {args.name} strategy")
    settings: dict[str, Any] = {
        "objectives": objectives,
        "w_bits": args.w_bits,
        "a_bits": args.a_bits,
        "target": args.target,
        "latency": latency_table(args, objectives, space),
        "latency_ms": args.latency_ms,
    }
    try:
        probe = make_problem(space, NoOracle(), **settings)
    except ValueError as error:
        raise UsageError(budget_message(error)) from None
    _check_memory(args, probe)
    console = make_console()
    needs_supernet = args.oracle == "supernet" or args.name in NEEDS_SENSITIVITIES
    loaded = load_holdout_supernet(args, console, "scoring images") if needs_supernet else None
    oracle: AccuracyOracle
    if "accuracy" not in objectives:
        oracle = NoOracle()
    elif args.oracle == "supernet":
        assert loaded is not None
        oracle = _measuring_oracle(*loaded)
    else:
        oracle = predictor_oracle(args, space, console)
    problem = make_problem(space, oracle, **settings)
    sensitivities = None
    if args.name in NEEDS_SENSITIVITIES:
        assert loaded is not None
        sensitivities = _sensitivities(args, problem, *loaded, console)
    front = _run(args, problem, sensitivities, console)
    front = with_predictor_source(_annotate(front, checkpoint, args), oracle)
    paths = front.write(out)
    from eqsearch.app.console import front_table

    print_frame(console, front_table(front), f"{args.name}: {len(front)} configs on the front")
    measured = front.info.get("evaluated")
    if args.oracle == "supernet" and measured is not None:
        console.print(f"{measured} configs measured on the supernet")
    console.print("wrote " + ", ".join(str(path) for path in paths))
    return EXIT_OK


def _check_memory(args: argparse.Namespace, problem: SearchProblem) -> None:
    """Refuse a count, budget sweep or probe count whose arrays would not fit, before any work."""
    from eqsearch.resources import check_memory, configs_memory_bytes
    from eqsearch.strategies import NEEDS_SENSITIVITIES

    if args.name == "random":
        configs, what = args.count or 100, f"--count {args.count or 100}"
    elif args.budgets is not None:
        configs = args.budgets * len(problem.layout.forms)
        what = f"--budgets {args.budgets}"
    else:
        configs, what = 0, ""
    if configs:
        # the candidates and their genomes; the ILP's levels are floats
        needed = configs_memory_bytes(configs, problem.space.n_layers, problem.layout.n_genes)
        check_memory(needed + 8.0 * configs, what)
    if args.name in NEEDS_SENSITIVITIES and (args.sensitivity or "hessian") == "hessian":
        # one Python float per probe, batch of scoring images and elastic layer, twice
        batches = -(-min(args.images, 1 << 20) // 64)
        samples = 2.0 * batches * args.probes * len(problem.space.elastic_indices)
        check_memory(64.0 * samples, f"--probes {args.probes} with --images {args.images}")


def _measuring_oracle(supernet: Supernet, evaluation: EvaluationSet) -> AccuracyOracle:
    from supernet.evaluation.evaluate import supernet_oracle

    return supernet_oracle(supernet, evaluation)


def _sensitivities(
    args: argparse.Namespace,
    problem: SearchProblem,
    supernet: Supernet,
    evaluation: EvaluationSet,
    console: Console,
) -> Sensitivities:
    from supernet.evaluation.sensitivity import checkpoint_sensitivities

    method = args.sensitivity or "hessian"
    with status(console, f"{method} sensitivities of every elastic layer", not args.no_progress):
        cached = checkpoint_sensitivities(
            args.supernet,
            method,
            supernet=supernet,
            evaluation=evaluation,
            forms=problem.layout.forms,
            images=args.images,
            probes=args.probes,
            seed=args.seed,
        )
    if cached.reused or cached.kept:
        verb = "reused" if cached.reused else "computed and cached"
        console.print(f"{method} sensitivities {verb}: {cached.path}")
    return cached.sensitivities


def _run(
    args: argparse.Namespace,
    problem: SearchProblem,
    sensitivities: Sensitivities | None,
    console: Console,
) -> ParetoFront:
    from eqsearch.strategies import run_strategy

    what = "measuring its configs on the supernet" if args.oracle == "supernet" else "searching"
    with status(console, f"{args.name}: {what}", not args.no_progress):
        try:
            return run_strategy(
                args.name,
                problem,
                sensitivities=sensitivities,
                sweep=args.sweep,
                budgets=args.budgets,
                count=args.count or 100,
                seed=args.seed,
            )
        except ValueError as error:
            raise UsageError(str(error)) from None


def _annotate(front: ParetoFront, checkpoint: dict[str, Any], args: argparse.Namespace) -> Any:
    from dataclasses import replace

    model = (checkpoint.get("build_info") or {}).get("model", "supernet")
    budgets = " ".join(
        f"{flag}≤{value:g}"
        for flag, value in (("W", args.w_bits), ("A", args.a_bits))
        if value is not None
    )
    method = front.info.get("sensitivity")
    name = f"{args.name} ({method})" if method else args.name
    title = f"{model}: {name}, {args.target} target {budgets}".strip()
    info = {**front.info, "title": title, "supernet": str(args.supernet), "oracle": args.oracle}
    return replace(front, info=info)
