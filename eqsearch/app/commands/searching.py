"""What nsga, strategy and refinement share: objectives and budgets, the predictor, latency."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import UsageError, add_force_argument, finite_float
from eqsearch.app.console import status

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.space import ElasticSpace
    from supernet.evaluation.evaluate import EvaluationSet
    from supernet.networks.elastic import Supernet


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


def add_bits_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """``--w-bits`` and ``--a-bits``: budgets on the searched layers' average bits."""
    add = parser.add_argument
    add("--w-bits", type=finite_float, help="budget: average weight bits of the searched layers")
    add(
        "--a-bits", type=finite_float, help="budget: average activation bits of the searched layers"
    )


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """``--objectives`` and ``--target`` (the hardware preset of forms)."""
    from eqsearch.problem import OBJECTIVE_NAMES
    from eqsearch.targets import TARGET_NAMES

    parser.add_argument(
        "--objectives",
        default="accuracy,bitops",
        help=f"comma-separated, from {', '.join(OBJECTIVE_NAMES)} (default accuracy,bitops)",
    )
    parser.add_argument(
        "--target",
        default="any",
        choices=TARGET_NAMES,
        help="hardware preset of forms, or a runtime probed here (its integer-kernel forms)",
    )


def add_front_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--force`` for the front's files (see :func:`front_output_directory`)."""
    parser.add_argument(
        "--out", help="directory of pareto.{json,csv,png} (default: the checkpoint's)"
    )
    add_force_argument(parser, "pareto.{json,csv,png}")


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


def front_output_directory(args: argparse.Namespace) -> Path:
    """``--out`` (default: the checkpoint's folder), refused where its front files may not be
    written (``--force``)."""
    from eqsearch.files import check_output_directory, check_output_file
    from eqsearch.pareto import FRONT_FILES

    out = check_output_directory(Path(args.out) if args.out else Path(args.supernet).parent)
    for name, kind in zip(FRONT_FILES, ("pareto", "table", "image"), strict=True):
        check_output_file(out / name, kind=kind, force=args.force)
    return out


def read_supernet_checkpoint(
    args: argparse.Namespace, remedy: str
) -> tuple[dict[str, Any], ElasticSpace]:
    """``--supernet``'s checkpoint with finite weights, and its space; a full-precision
    checkpoint is a usage error that ends with ``remedy``."""
    from eqsearch.space import ElasticSpace
    from supernet.files.checkpoint import check_finite_weights, load_checkpoint

    checkpoint = load_checkpoint(args.supernet)
    if checkpoint.get("kind") != "supernet":
        raise UsageError(f"{args.supernet} is a full-precision checkpoint; {remedy}")
    check_finite_weights(checkpoint["state_dict"], args.supernet)
    return checkpoint, ElasticSpace.from_dict(checkpoint["space"])


def load_holdout_supernet(
    args: argparse.Namespace, console: Console, images: str
) -> tuple[Supernet, EvaluationSet]:
    """``--supernet`` and its held-out scoring images (``--bn-images``, ``--val-images``,
    ``--device``), under a status line naming the ``images``."""
    from supernet.evaluation.evaluate import load_for_evaluation

    with status(console, f"loading the supernet and its {images}", not args.no_progress):
        supernet, _, evaluation = load_for_evaluation(
            args.supernet,
            split="holdout",
            bn_images=args.bn_images,
            val_images=args.val_images,
            device=args.device,
        )
    return supernet, evaluation


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


def latency_table(args: argparse.Namespace, objectives: Sequence[str], space: Any) -> Any:
    """The latency table a search asks for (None without a latency objective or budget)."""
    from eqsearch.app.commands.latency import load_latency_table

    needed = "latency" in objectives or args.latency_ms is not None
    if args.latency_table is not None and not needed:
        raise UsageError("--latency-table goes with the latency objective or --latency-ms")
    return load_latency_table(args.latency_table, args.supernet, space, needed=needed)


def verify_latency(front: Any, args: argparse.Namespace, table: Any, console: Console) -> Any:
    """Measure the verified configs' latency on the table's runtime, where the table was
    measured on this CPU with the installed runtime (else say why not)."""
    from eqsearch.app.commands.latency import measure_front_latency
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
    from supernet.files.checkpoint import load_supernet

    indices = front.spread(args.verify)
    supernet, _ = load_supernet(args.supernet)
    with status(console, f"measuring the latency of {len(indices)} configs", not args.no_progress):
        return measure_front_latency(front, supernet.eval(), table, indices)


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
