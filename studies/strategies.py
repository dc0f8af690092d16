"""Study: sensitivity ILP, greedy, uniform and random against NSGA-II + CQAP on one supernet."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eqsearch.app.commands.common import (
    add_force_argument,
    add_progress_argument,
    integer,
    positive_int,
    progress_printer,
    seed_int,
)
from eqsearch.app.refine import RefineSettings, refine_search, scoring_evaluation
from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_save_figure, atomic_write_text, check_outputs
from eqsearch.locks import hold_directory
from eqsearch.oracle import AccuracyOracle, CachedOracle
from eqsearch.pareto import ParetoFront, hypervolume
from eqsearch.problem import SearchProblem, make_problem
from eqsearch.strategies import (
    Sensitivities,
    greedy_search,
    ilp_search,
    random_search,
    uniform_search,
)
from eqsearch.targets import TARGETS, get_target
from predictors.registry import backend_class
from studies.entry import study_main
from studies.report import markdown_table

FRONT_OBJECTIVES = ("accuracy", "bitops")
"""The front every strategy is scored on: measured accuracy against BitOPs."""
WEIGHT_OBJECTIVES = ("accuracy", "w_comp")
"""The second front: measured accuracy against W-Comp (with the first and last layers pinned,
W-Comp falls as the searched layers' average weight bits rise: the accuracy-vs-average-weight-
bits front)."""
REPORT_NAME = "strategies.md"
PLOT_NAME = "strategies.png"
RESULT_NAME = "strategies.json"
OUTPUTS = {REPORT_NAME: "report", PLOT_NAME: "image", RESULT_NAME: "json"}
"""The report files of the study (name → kind, see ``eqsearch.files.KINDS``); the samples it
measures into its directory are continued by a rerun, not replaced."""


@dataclass(frozen=True)
class StrategyStudySettings:
    """What the study runs.

    Args:
        target: the hardware preset whose forms every strategy searches.
        budgets: budget levels of each ILP sweep, and the greedy's picks at as many levels.
        per_round: K, configs measured from each predicted front in the refinement.
        refine_rounds: R; the one-shot NSGA-II row measures ``K·(R+1)`` configs of its one
            front, so both NSGA-II rows measure as many configs, and random draws as many.
        backend: the predictor (CQAP) of the NSGA-II rows.
        population, generations: of each NSGA-II search.
        hessian_images, hessian_probes: of the Hessian traces.
        sample_count: subnets measured for the predictor when no samples file exists.
        weight_budgets: the average-weight-bit budgets of the "best accuracy at W ≤ b" columns.
        seed: seeds the searches, the random draw, the probes and the predictor.
    """

    target: str = "tensorrt"
    budgets: int = 20
    per_round: int = 12
    refine_rounds: int = 2
    backend: str = "xgboost"
    population: int = 100
    generations: int = 500
    hessian_images: int = 256
    hessian_probes: int = 16
    sample_count: int = 1000
    weight_budgets: tuple[float, ...] = (2.5, 3.0, 4.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}; got {self.target!r}")
        require_positive_integers(
            self,
            (
                "budgets",
                "per_round",
                "population",
                "hessian_images",
                "hessian_probes",
                "sample_count",
            ),
            "StrategyStudySettings.",
        )
        if self.population < 2 or self.hessian_probes < 2:
            raise InputError("StrategyStudySettings: population and hessian_probes must be >= 2")
        rounds = self.refine_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise InputError(
                f"StrategyStudySettings.refine_rounds must be an integer >= 0; got {rounds!r}"
            )
        backend_class(self.backend)

    @property
    def verified(self) -> int:
        """Configs each NSGA-II row (and random) measures per front: ``K·(R+1)``."""
        return self.per_round * (self.refine_rounds + 1)


@dataclass
class StrategyOutcome:
    """One strategy's measured fronts and costs.

    Attributes:
        name, label: key and table label.
        front: measured accuracy vs BitOPs.
        weight_front: measured accuracy vs W-Comp (average weight bits).
        measurements: distinct configs it measured on the supernet for its two fronts.
        seconds: wall time of its searches and those measurements.
        prior_measurements, prior_seconds: what it needed before: the measured sensitivities'
            one-layer-lowered configs, or the predictor's samples (their recorded measuring
            time, even when they were read back from their files).
        hypervolume: of ``front`` (see :func:`front_hypervolume`).
        best_at: best measured accuracy among its configs with average weight bits <= b.
    """

    name: str
    label: str
    front: ParetoFront
    weight_front: ParetoFront
    measurements: int
    seconds: float
    prior_measurements: int = 0
    prior_seconds: float = 0.0
    hypervolume: float = 0.0
    best_at: dict[float, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategyStudy:
    """What :func:`run_strategy_study` measured and wrote."""

    outcomes: list[StrategyOutcome]
    reference: tuple[float, float]
    scoring_images: int
    markdown: str
    report: Path
    plot: Path


def front_hypervolume(front: ParetoFront, reference: tuple[float, float]) -> float:
    """Hypervolume of a measured (accuracy, BitOPs) front in accuracy points × decades of
    BitOPs, up to ``reference`` = (accuracy, BitOPs); BitOPs on a log scale, so that a
    decade of cheap configs counts as much as one of expensive ones."""
    points = np.column_stack([-front.column("accuracy"), np.log10(front.column("bitops"))])
    return hypervolume(points, (-reference[0], math.log10(reference[1])))


def best_accuracy_at(fronts: Sequence[ParetoFront], budget: float) -> float | None:
    """The best measured accuracy among the fronts' configs with average weight bits <=
    ``budget`` (None where none has)."""
    best: float | None = None
    for front in fronts:
        w_bits = front.cost_columns()["w_bits"]
        fits = w_bits <= budget + 1e-9
        if fits.any():
            value = float(front.column("accuracy")[fits].max())
            best = value if best is None else max(best, value)
    return best


def _samples_seconds(samples: Path) -> float:
    """Seconds the supernet spent measuring a samples file's rows (its ``seconds`` column)."""
    from predictors.samples.reading import read_sample_frame

    frame = read_sample_frame(samples)
    return float(frame["seconds"].sum()) if "seconds" in frame.columns else 0.0


def study_samples(checkpoint: Path, samples: Path | None, out: Path) -> tuple[Path, bool]:
    """Where the predictor's samples come from: (the path, whether the study measures them).

    The given file, the one beside the checkpoint, or ``out/samples.csv``, measured by the
    study (and resumed on a rerun).

    Raises:
        InputError: a given file that does not exist, or something other than a samples file
            at ``out/samples.csv`` (checked before any work).
    """
    if samples is not None:
        if not samples.is_file():
            raise InputError(f"samples file not found: {samples}")
        return samples, False
    beside = checkpoint.parent / "samples.csv"
    if beside.is_file():
        return beside, False
    from predictors.samples.collect import check_samples_target

    return check_samples_target(out / "samples.csv"), True


def _prepare_samples(
    checkpoint: Path, samples: Path | None, out: Path, settings: StrategyStudySettings
) -> Path:
    """The predictor's samples (see :func:`study_samples`), measuring
    ``settings.sample_count`` subnets when the study makes them."""
    target, measure = study_samples(checkpoint, samples, out)
    if measure:
        from eqsearch.app.measure import sample_subnets

        sample_subnets(
            checkpoint, target, settings.sample_count, seed=settings.seed, progress=False
        )
    return target


def run_strategy_study(
    checkpoint: str | Path,
    out: str | Path,
    settings: StrategyStudySettings | None = None,
    *,
    samples: str | Path | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> StrategyStudy:
    """Every strategy on one supernet, every config they pick measured on it.

    Strategies: the ILP and greedy on HAWQ's Hessian sensitivities and on measured ones,
    every uniform config, random configs (as many as the NSGA-II rows verify), NSGA-II on a
    predictor fitted on the samples with ``K·(R+1)`` configs of its front measured, and the
    same with ``R`` refinement rounds of ``K``. Each is run twice, for the accuracy-vs-BitOPs
    and the accuracy-vs-average-weight-bits fronts, measuring on its own cached supernet
    oracle (so its count and time are its own). Writes ``strategies.md``, ``strategies.png``
    and ``strategies.json`` into ``out``.

    Args:
        checkpoint: a trained ``supernet.pt``.
        out: the study's directory.
        settings: see :class:`StrategyStudySettings`.
        samples: the predictor's samples (default: ``samples.csv`` beside the checkpoint,
            else measured into ``out``).
        device: torch device.
        log: receives one line per finished step.
    """
    from supernet.evaluation.evaluate import supernet_oracle
    from supernet.evaluation.sensitivity import checkpoint_sensitivities

    chosen = settings or StrategyStudySettings()
    location = Path(checkpoint)
    directory = check_outputs(out, OUTPUTS, force=True)
    study_samples(location, Path(samples) if samples is not None else None, directory)
    samples_path = _prepare_samples(
        location, Path(samples) if samples is not None else None, directory, chosen
    )
    supernet, evaluation = scoring_evaluation(location, samples_path, device=device)
    space = supernet.space
    forms = get_target(chosen.target).forms_in(space)

    def problem(oracle: AccuracyOracle, objectives: Sequence[str]) -> SearchProblem:
        return make_problem(space, oracle, objectives=objectives, target=chosen.target)

    def fresh_oracle() -> CachedOracle:
        return CachedOracle(supernet_oracle(supernet, evaluation), space)

    outcomes: list[StrategyOutcome] = []
    sensitivities: dict[str, tuple[Sensitivities, float, int]] = {}
    for method in ("hessian", "measured"):
        cached = checkpoint_sensitivities(
            location,
            method,
            supernet=supernet,
            evaluation=evaluation,
            forms=forms,
            images=chosen.hessian_images,
            probes=chosen.hessian_probes,
            seed=chosen.seed,
        )
        info = cached.sensitivities.info
        sensitivities[method] = (
            cached.sensitivities,
            float(info.get("seconds", 0.0)),
            int(info.get("measurements", 0)),
        )
        log(f"{method} sensitivities: {info.get('seconds', 0.0):.1f} s ({cached.path.name})")

    Run = Callable[[AccuracyOracle, Sequence[str]], ParetoFront]

    def add(
        name: str, label: str, run: Run, prior_seconds: float = 0.0, prior_measurements: int = 0
    ) -> None:
        oracle = fresh_oracle()
        started = time.perf_counter()
        front = run(oracle, FRONT_OBJECTIVES)
        weight_front = run(oracle, WEIGHT_OBJECTIVES)
        seconds = time.perf_counter() - started
        outcome = StrategyOutcome(
            name,
            label,
            front,
            weight_front,
            oracle.misses,
            seconds,
            prior_measurements,
            prior_seconds,
        )
        outcomes.append(outcome)
        log(
            f"{label}: {oracle.misses} measurements in {seconds:.1f} s (before: "
            f"{prior_measurements} in {prior_seconds:.1f} s)"
        )

    for method, title in (("hessian", "Hessian (HAWQ)"), ("measured", "measured")):
        values, seconds, measured = sensitivities[method]

        def ilp(oracle: AccuracyOracle, objectives: Sequence[str], v: Sensitivities = values):
            return ilp_search(problem(oracle, objectives), v, budgets=chosen.budgets)

        def greedy(oracle: AccuracyOracle, objectives: Sequence[str], v: Sensitivities = values):
            return greedy_search(problem(oracle, objectives), v, budgets=chosen.budgets)

        add(f"ilp-{method}", f"ILP, {title} sensitivity", ilp, seconds, measured)
        add(f"greedy-{method}", f"greedy, {title} sensitivity", greedy, seconds, measured)
    add("uniform", "uniform W/A", lambda oracle, names: uniform_search(problem(oracle, names)))
    add(
        "random",
        f"random ({chosen.verified} configs)",
        lambda oracle, names: random_search(
            problem(oracle, names), chosen.verified, seed=chosen.seed
        ),
    )
    from predictors import load_samples

    configs, accuracies = load_samples(samples_path, space)
    sample_seconds = _samples_seconds(samples_path)
    for rounds, per_round, name, label in (
        (0, chosen.verified, "nsga2", f"NSGA-II + {chosen.backend}, {chosen.verified} verified"),
        (
            chosen.refine_rounds,
            chosen.per_round,
            "nsga2-refined",
            f"NSGA-II + {chosen.backend}, refined {chosen.refine_rounds}× {chosen.per_round}",
        ),
    ):
        refine = RefineSettings(
            rounds=rounds,
            per_round=per_round,
            backend=chosen.backend,
            predictor_seed=chosen.seed,
            population=chosen.population,
            generations=chosen.generations,
            seed=chosen.seed,
        )

        def search(
            oracle: AccuracyOracle, objectives: Sequence[str], refine: RefineSettings = refine
        ) -> ParetoFront:
            return refine_search(
                lambda o: problem(o, objectives), oracle, configs, accuracies, refine
            ).front

        add(name, label, search, sample_seconds, len(configs))

    reference_oracle = fresh_oracle()
    lowest = space.smallest(forms[0])
    floor = float(reference_oracle.evaluate([lowest])[0]) - 1.0
    from eqsearch import costs

    reference = (floor, float(costs.bitops(space, space.largest(forms[0]))))
    for outcome in outcomes:
        outcome.hypervolume = front_hypervolume(outcome.front, reference)
        outcome.best_at = {
            budget: best_accuracy_at([outcome.front, outcome.weight_front], budget)
            for budget in chosen.weight_budgets
        }
    n_images = len(evaluation.labels)
    markdown = _markdown(outcomes, reference, n_images, chosen, len(configs), location)
    report = atomic_write_text(directory / REPORT_NAME, markdown + "\n")
    plot = _plot(outcomes, directory / PLOT_NAME, str(supernet.build_info.get("model")))
    _write_json(directory / RESULT_NAME, outcomes, reference, n_images, chosen, samples_path)
    return StrategyStudy(outcomes, reference, n_images, markdown, report, plot)


def _noise_line(outcomes: Sequence[StrategyOutcome], n_images: int) -> str:
    accuracies = np.concatenate([o.front.column("accuracy") for o in outcomes])
    typical = float(np.median(accuracies)) / 100.0
    standard_error = 100.0 * math.sqrt(max(typical * (1 - typical), 1e-12) / n_images)
    return (
        f"Every accuracy is measured on the same {n_images} scoring images (one image = "
        f"{100 / n_images:.3f} points); at the fronts' median accuracy ({100 * typical:.2f} %) "
        f"one binomial standard error is ±{standard_error:.2f} points. The strategies are "
        "scored on the same images, so their differences are less noisy than that; the "
        "accuracy on unseen images can differ by about as much."
    )


def _with_prior(value: str, prior: float, text: str) -> str:
    """``value (prior)``, or ``value`` alone where nothing came before."""
    return f"{value} ({text})" if prior else value


def _markdown(
    outcomes: Sequence[StrategyOutcome],
    reference: tuple[float, float],
    n_images: int,
    settings: StrategyStudySettings,
    n_samples: int,
    checkpoint: Path,
) -> str:
    budgets = settings.weight_budgets
    header = [
        "strategy",
        "measurements (before)",
        "wall s (before)",
        "front",
        "hypervolume",
        *(f"best % at W ≤ {b:g}" for b in budgets),
    ]
    rows = [
        [
            o.label,
            f"{o.measurements} ({o.prior_measurements})"
            if o.prior_measurements
            else o.measurements,
            f"{o.seconds:.1f} ({o.prior_seconds:.1f})" if o.prior_seconds else f"{o.seconds:.1f}",
            len(o.front),
            f"{o.hypervolume:.3f}",
            *("-" if o.best_at.get(b) is None else f"{o.best_at[b]:.2f}" for b in budgets),
        ]
        for o in outcomes
    ]
    lines = [
        f"# Strategies on {checkpoint}",
        "",
        markdown_table(rows, header),
        "",
        f"Target `{settings.target}`. Hypervolume of the measured accuracy-vs-BitOPs front in "
        "accuracy points × decades of BitOPs, up to the reference "
        f"({reference[0]:.2f} %, {reference[1]:.4g} BitOPs): the lowest-bit config's "
        "accuracy minus one point, and the highest-bit config's BitOPs. The W ≤ b columns: "
        "the best measured accuracy among the strategy's configs of either front. Measurements "
        "count the distinct configs a strategy measured for its two fronts, its wall time the "
        "searches and those measurements; in brackets what it needed before: the NSGA-II rows "
        f"the predictor's {n_samples} samples (their recorded measuring time), the "
        "measured-sensitivity rows the one-layer-lowered configs (computed once, shared by "
        "the ILP and greedy rows), the Hessian rows the traces' seconds.",
        "",
        _noise_line(outcomes, n_images),
    ]
    return "\n".join(lines)


def _step(axis: Any, costs: np.ndarray, accuracy: np.ndarray, style: str, label: str) -> None:
    """A front as a staircase over its costs, in increasing cost."""
    order = np.argsort(costs)
    axis.step(
        costs[order], accuracy[order], style, where="post", marker="o", markersize=3, label=label
    )


def _plot(outcomes: Sequence[StrategyOutcome], path: Path, model: str) -> Path:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    styles = ["-", "--", "-.", ":"]
    for index, outcome in enumerate(outcomes):
        style = styles[index % len(styles)]
        front, weight_front = outcome.front, outcome.weight_front
        _step(left, front.column("bitops"), front.column("accuracy"), style, outcome.label)
        w_bits = weight_front.cost_columns()["w_bits"]
        _step(right, w_bits, weight_front.column("accuracy"), style, outcome.label)
    left.set_xscale("log")
    left.set_xlabel("BitOPs")
    right.set_xlabel("average weight bits (searched layers)")
    for axis in (left, right):
        axis.set_ylabel("measured top-1 (%)")
        axis.grid(True, alpha=0.3)
    left.set_title(f"{model}: measured accuracy vs BitOPs", fontsize=9)
    right.set_title(f"{model}: measured accuracy vs average weight bits", fontsize=9)
    right.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    atomic_save_figure(figure, path)
    plt.close(figure)
    return path


def _front_rows(front: ParetoFront) -> list[dict[str, Any]]:
    columns = front.cost_columns()
    return [
        {
            "config": config.to_dict(),
            "accuracy": float(front.column("accuracy")[row]),
            "bitops": float(columns["bitops"][row]),
            "w_bits": float(columns["w_bits"][row]),
            "a_bits": float(columns["a_bits"][row]),
        }
        for row, config in enumerate(front.configs)
    ]


def _write_json(
    path: Path,
    outcomes: Sequence[StrategyOutcome],
    reference: tuple[float, float],
    n_images: int,
    settings: StrategyStudySettings,
    samples: Path,
) -> None:
    payload = {
        "settings": {**settings.__dict__, "weight_budgets": list(settings.weight_budgets)},
        "samples": str(samples),
        "scoring_images": n_images,
        "reference": list(reference),
        "strategies": [
            {
                "name": o.name,
                "label": o.label,
                "measurements": o.measurements,
                "seconds": o.seconds,
                "prior_measurements": o.prior_measurements,
                "prior_seconds": o.prior_seconds,
                "hypervolume": o.hypervolume,
                "best_at": {str(k): v for k, v in o.best_at.items()},
                "front": _front_rows(o.front),
                "weight_front": _front_rows(o.weight_front),
            }
            for o in outcomes
        ],
    }
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


# -- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``eqsearch study strategies`` / ``python -m studies.strategies``."""
    defaults = StrategyStudySettings()
    add = parser.add_argument
    add("--supernet", required=True, help="a trained supernet.pt")
    add("--out", help="the study's directory (default: strategies/ beside the checkpoint)")
    add("--samples", help="the predictor's samples (default: samples.csv beside the checkpoint)")
    add("--target", default=defaults.target, choices=tuple(TARGETS), help="forms searched")
    add("--budgets", type=positive_int, default=defaults.budgets, help="ILP budget levels")
    add("--per-round", type=positive_int, default=defaults.per_round, help="K of the refinement")
    add("--refine", type=integer, default=defaults.refine_rounds, help="R of the refinement")
    add("--backend", default=defaults.backend, help="predictor of the NSGA-II rows")
    add("--population", type=positive_int, default=defaults.population, help="NSGA-II")
    add("--generations", type=positive_int, default=defaults.generations, help="NSGA-II")
    add("--images", type=positive_int, default=defaults.hessian_images, help="Hessian images")
    add("--probes", type=positive_int, default=defaults.hessian_probes, help="Hessian probes")
    add(
        "--sample-count",
        type=positive_int,
        default=defaults.sample_count,
        help="subnets measured for the predictor when there is no samples file",
    )
    add("--seed", type=seed_int, default=defaults.seed, help="seeds every step")
    add("--device", default="cpu", help="torch device")
    add_force_argument(parser, "strategies.{md,png,json}")
    add_progress_argument(parser)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed flags; prints the markdown table. Returns an exit code."""
    if args.refine < 0:
        raise InputError(f"--refine must be >= 0; got {args.refine}")
    settings = StrategyStudySettings(
        target=args.target,
        budgets=args.budgets,
        per_round=args.per_round,
        refine_rounds=args.refine,
        backend=args.backend,
        population=args.population,
        generations=args.generations,
        hessian_images=args.images,
        hessian_probes=args.probes,
        sample_count=args.sample_count,
        seed=args.seed,
    )
    checkpoint = Path(args.supernet)
    if not checkpoint.is_file():
        raise InputError(f"supernet checkpoint not found: {checkpoint}")
    out = Path(args.out) if args.out else checkpoint.parent / "strategies"
    check_outputs(out, OUTPUTS, force=args.force)
    study_samples(checkpoint, Path(args.samples) if args.samples else None, out)
    with hold_directory(out, what="the study directory"):
        result = run_strategy_study(
            checkpoint,
            out,
            settings,
            samples=args.samples,
            device=args.device,
            log=progress_printer(not args.no_progress),
        )
    print(result.markdown)
    print(f"wrote {result.report}, {result.plot} and {out / RESULT_NAME}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m studies.strategies``: ``eqsearch study strategies``."""
    return study_main("strategies", argv)


if __name__ == "__main__":
    raise SystemExit(main())
