"""``eqsearch nsga`` (the mixed-precision search) and ``eqsearch demo`` (the whole pipeline)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqsearch.commands.common import (
    DEVICE_HELP,
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_image_count_arguments,
    add_progress_argument,
    finite_float,
    make_console,
    non_negative_int,
    positive_int,
    print_frame,
    seed_int,
    status,
)

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.problem import SearchProblem
    from eqsearch.space import ElasticSpace

TABLE_COLUMNS = ("w_bits", "a_bits", "w_comp", "a_comp", "bitops", "size_bytes", "form")


def register(commands: Any) -> None:
    """Add the ``nsga`` and ``demo`` subcommands."""
    from eqsearch.commands.refine import add_refine_arguments
    from eqsearch.engines import ENGINES
    from eqsearch.problem import OBJECTIVE_NAMES
    from eqsearch.targets import TARGET_NAMES

    nsga = commands.add_parser(
        "nsga", help="NSGA-II search for mixed-precision configs on the Pareto front"
    )
    add = nsga.add_argument
    add("--supernet", required=True, help="a supernet.pt checkpoint")
    add("--w-bits", type=finite_float, help="budget: average weight bits of the searched layers")
    add(
        "--a-bits", type=finite_float, help="budget: average activation bits of the searched layers"
    )
    add("--bitops", type=finite_float, help="budget: BitOPs per image")
    add("--size", type=finite_float, help="budget: packed model size in bytes")
    add("--macs", type=finite_float, help="budget: MACs per image of a joint space's architecture")
    add_latency_arguments(nsga)
    add(
        "--objectives",
        default="accuracy,bitops",
        help=f"comma-separated, from {', '.join(OBJECTIVE_NAMES)} (default accuracy,bitops)",
    )
    add(
        "--target",
        default="any",
        choices=TARGET_NAMES,
        help="hardware preset of forms, or a runtime probed here (its integer-kernel forms)",
    )
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
    add("--out", help="directory of pareto.{json,csv,png} (default: the checkpoint's)")
    add_force_argument(nsga, "pareto.{json,csv,png}")
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


class NoOracle:
    """Stands in for the oracle while input is validated (never asked for accuracy)."""

    def evaluate(self, configs: Sequence[Any]) -> Any:
        raise RuntimeError("the oracle is not loaded yet")


def objective_names(text: str) -> list[str]:
    """The objectives named by ``--objectives`` (comma separated); none is a usage error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--objectives must name at least one objective")
    return names


def add_latency_arguments(parser: argparse.ArgumentParser) -> None:
    """``--latency-table`` and ``--latency-ms`` (the ``latency`` objective's table, a budget)."""
    parser.add_argument(
        "--latency-table",
        help="a latency table (eqsearch latency build) for the latency objective and budget "
        "(default: the one beside the checkpoint)",
    )
    parser.add_argument(
        "--latency-ms", type=finite_float, help="budget: predicted ms per inference (the table's)"
    )


def _check_counts(args: argparse.Namespace) -> None:
    if args.population < 2:
        raise UsageError(f"--population must be at least 2; got {args.population}")
    if args.generations < 0:
        raise UsageError(f"--generations must be >= 0; got {args.generations}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; got {args.seed}")
    if args.verify < 0:
        raise UsageError(f"--verify must be >= 0; got {args.verify}")


def _output_directory(args: argparse.Namespace) -> Path:
    from eqsearch.files import check_output_directory, check_output_file
    from eqsearch.pareto import FRONT_FILES

    out = check_output_directory(Path(args.out) if args.out else Path(args.supernet).parent)
    for name, kind in zip(FRONT_FILES, ("pareto", "table", "image"), strict=True):
        check_output_file(out / name, kind=kind, force=args.force)
    return out


def budget_message(problem_error: ValueError) -> str:
    """A problem's budget error in the command line's words (``--w-bits``, ``--bitops``, ...)."""
    text = str(problem_error)
    for name, flag in (
        ("w_bits", "--w-bits"),
        ("a_bits", "--a-bits"),
        ("bitops_budget", "--bitops"),
        ("size_budget", "--size"),
        ("macs_budget", "--macs"),
        ("latency_budget", "--latency-ms"),
    ):
        text = text.replace(f"the budget {name} <=", flag).replace(f"{name} <=", flag)
    return text


def predictor_oracle(
    args: argparse.Namespace, space: ElasticSpace, console: Console | None = None
) -> AccuracyOracle:
    """The CQAP oracle of ``--predictor`` (or the newest one found beside ``--supernet``),
    checked against ``space``; a missing or unusable predictor is a usage error.

    The file chosen is printed on ``console`` (path, backend, held-out Kendall τ) and kept as
    the oracle's ``source`` for ``pareto.json``; a held-out τ below
    :data:`predictors.provenance.LOW_TAU` is warned about on standard error.
    """
    try:
        from predictors import PredictorOracle, find_predictor, load_predictor
        from predictors.provenance import predictor_source
        from predictors.xgb import skip_sklearn_wrappers
    except ImportError as error:  # pragma: no cover - the package ships with eqsearch
        raise UsageError(
            f"the predictors package is unavailable ({error}); use --oracle supernet"
        ) from None
    skip_sklearn_wrappers()  # this command uses boosters only: 1.7 s less of import
    checkpoint = Path(args.supernet)
    path = Path(args.predictor) if args.predictor else find_predictor(checkpoint.parent)
    if path is None:
        raise UsageError(
            f"no predictor beside {checkpoint}: make one with `eqsearch sample --supernet "
            f"{checkpoint}` then `eqsearch fit-predictor --samples "
            f"{checkpoint.parent / 'samples.csv'} --backend mlp`, or search with --oracle supernet"
        )
    predictor = load_predictor(path)
    if predictor.space.fingerprint != space.fingerprint:
        raise UsageError(
            f"{path} was fitted on another space than {checkpoint}'s; fit one on its samples"
        )
    source = predictor_source(
        path, predictor.name, relative_to=None if args.predictor else checkpoint.parent
    )
    if console is not None:
        chosen = "given" if args.predictor else "newest beside the checkpoint"
        console.print(f"predictor ({chosen}): {source.describe()}")
    warning = source.warning()
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    # BasePredictor implements the Predictor protocol (its name is a class variable)
    return PredictorOracle(predictor, source)


def with_predictor_source(front: ParetoFront, oracle: AccuracyOracle) -> ParetoFront:
    """``front`` with ``info.predictor`` naming the predictor file behind ``oracle`` (path,
    backend, sha256, held-out τ); unchanged for any other oracle."""
    from dataclasses import replace

    source = getattr(oracle, "source", None)
    if source is None:
        return front
    return replace(front, info={**front.info, "predictor": source.to_dict()})


@contextmanager
def generation_bar(
    console: Console, description: str, total: int, enabled: bool
) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over generations; yields the ``progress`` callback of ``nsga2``."""
    if not enabled or total == 0:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, all_generations: int) -> None:
            bar.update(task, completed=done, total=all_generations)

        yield advance


def verify_front(
    front: ParetoFront, oracle: AccuracyOracle, k: int
) -> tuple[ParetoFront, float | None]:
    """Measure ``k`` configs spread over the front with ``oracle``; returns the front with
    their measured accuracies and Kendall's τ between predicted and measured (None for k < 2)."""
    from predictors.metrics import kendall_tau

    indices = front.spread(k)
    measured = oracle.evaluate(front.batch.take(indices))
    verified = front.with_measured(indices, measured)
    if len(indices) < 2 or "accuracy" not in front.objective_names:
        return verified, None
    predicted = front.column("accuracy")[indices]
    tau = kendall_tau(predicted, measured)  # the order scipy was called in before
    return verified, tau if np.isfinite(tau) else None


def front_table(front: ParetoFront) -> Any:
    """The columns of the front worth printing."""
    frame = front.to_frame()
    columns = [*front.objective_names]
    columns += [c for c in TABLE_COLUMNS if c in frame.columns and c not in columns]
    for name in ("latency_ms", "measured_accuracy", "measured_latency_ms"):
        if name in frame.columns and name not in columns:
            columns.append(name)
    return frame[columns]


def _cmd_nsga(args: argparse.Namespace) -> int:
    from eqsearch.commands.refine import check_refine_arguments
    from eqsearch.locks import hold_directory

    _check_counts(args)
    objectives = objective_names(args.objectives)
    check_refine_arguments(args, objectives)
    out = _output_directory(args)
    with hold_directory(out, what="the output directory"):
        return _nsga(args, objectives, out)


def _nsga(args: argparse.Namespace, objectives: list[str], out: Path) -> int:
    from eqsearch.commands.refine import run_refinement
    from eqsearch.engines import search_memory_bytes
    from eqsearch.problem import make_problem
    from eqsearch.resources import check_memory
    from eqsearch.space import ElasticSpace
    from supernet.checkpoint import check_finite_weights, load_checkpoint

    checkpoint = load_checkpoint(args.supernet)
    if checkpoint.get("kind") != "supernet":
        raise UsageError(f"{args.supernet} is a full-precision checkpoint; search a supernet.pt")
    check_finite_weights(checkpoint["state_dict"], args.supernet)
    space = ElasticSpace.from_dict(checkpoint["space"])
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


def latency_table(args: argparse.Namespace, objectives: Sequence[str], space: Any) -> Any:
    """The latency table a search asks for (None without a latency objective or budget)."""
    from eqsearch.commands.latency import load_latency_table

    needed = "latency" in objectives or args.latency_ms is not None
    if args.latency_table is not None and not needed:
        raise UsageError("--latency-table goes with the latency objective or --latency-ms")
    return load_latency_table(args.latency_table, args.supernet, space, needed=needed)


def verify_latency(front: Any, args: argparse.Namespace, table: Any, console: Console) -> Any:
    """Measure the verified configs' latency on the table's runtime, where the table was
    measured on this CPU with the installed runtime (else say why not)."""
    from eqsearch.commands.latency import measure_front_latency
    from eqsearch.latency.fingerprint import cpu_name, runtime_version

    key = table.key
    try:
        here = (cpu_name(), runtime_version(key.runtime))
    except ValueError:
        here = (cpu_name(), "")
    if here != (key.cpu, key.version):
        console.print(
            f"latency not measured: the table was measured with {key.runtime} {key.version} "
            f"on {key.cpu}, this is {here[1] or 'no ' + key.runtime} on {here[0]}"
        )
        return front
    from supernet.checkpoint import load_supernet

    indices = front.spread(args.verify)
    supernet, _ = load_supernet(args.supernet)
    with status(console, f"measuring the latency of {len(indices)} configs", not args.no_progress):
        return measure_front_latency(front, supernet.eval(), table, indices)


def _load_supernet_oracle(args: argparse.Namespace, console: Console) -> AccuracyOracle:
    from supernet.evaluate import load_for_evaluation, supernet_oracle

    with status(console, "loading the supernet and its evaluation images", not args.no_progress):
        supernet, _, evaluation = load_for_evaluation(
            args.supernet,
            split="holdout",
            bn_images=args.bn_images,
            val_images=args.val_images,
            device=args.device,
        )
    return supernet_oracle(supernet, evaluation)


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


def annotate_front(front: ParetoFront, checkpoint: dict[str, Any], args: argparse.Namespace) -> Any:
    """``front`` with the search's title (model, engine, target, budgets) and sources."""
    from dataclasses import replace

    model = (checkpoint.get("build_info") or {}).get("model", "supernet")
    budgets = " ".join(
        f"{flag}≤{value:g}"
        for flag, value in (
            ("W", args.w_bits),
            ("A", args.a_bits),
            ("BitOPs", args.bitops),
            ("size", args.size),
            ("MACs", args.macs),
            ("latency ms", getattr(args, "latency_ms", None)),
        )
        if value is not None
    )
    title = f"{model}: NSGA-II ({args.engine}), {args.target} target {budgets}".strip()
    info = {**front.info, "title": title, "supernet": str(args.supernet), "oracle": args.oracle}
    return replace(front, info=info)


def _title(front: ParetoFront, args: argparse.Namespace) -> str:
    return f"Pareto front: {len(front)} configs ({front.info.get('title', '')})"


# -- demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from eqsearch.demo import DemoSettings, run_demo

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
