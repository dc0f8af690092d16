"""Study: sensitivity ILP, greedy, uniform and random against NSGA-II + CQAP on one supernet."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from eqsearch.app.commands.common import (
    add_renamed_option,
    integer,
    positive_int,
    progress_printer,
)
from eqsearch.app.refine import RefineSettings, refine_search, scoring_evaluation
from eqsearch.errors import InputError, require_positive_integers
from eqsearch.files import atomic_write_text, check_outputs
from eqsearch.oracle import AccuracyOracle, CachedOracle
from eqsearch.pareto import ParetoFront
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
from studies.entry import add_run_arguments, report_study, run_in_directory, study_entry
from studies.front_search import (
    FrontSearch,
    add_front_search_arguments,
    front_search_from_args,
    settings_record,
)
from studies.strategies_report import (
    StrategyOutcome,
    best_accuracy_at,
    front_hypervolume,
    plot_strategies,
    strategies_markdown,
    write_strategies_json,
)

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
        weight_budgets: the average-weight-bit budgets of the "best accuracy at W ≤ b" columns.
        backend: the predictor (CQAP) of the NSGA-II rows.
        refine: R, refinement rounds; the one-shot NSGA-II row measures ``K·(R+1)`` configs
            of its one front, so both NSGA-II rows measure as many configs, and random draws
            as many.
        search: each NSGA-II search, and K (``verify``), the configs measured from each
            predicted front in the refinement.
        hessian_images, hessian_probes: of the Hessian traces.
        sample_count: subnets measured for the predictor when no samples file exists.
        seed: seeds the searches, the random draw, the probes and the predictor.
    """

    target: str = "tensorrt"
    budgets: int = 20
    weight_budgets: tuple[float, ...] = (2.5, 3.0, 4.0)
    backend: str = "xgboost"
    refine: int = 2
    search: FrontSearch = FrontSearch()
    hessian_images: int = 256
    hessian_probes: int = 16
    sample_count: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}; got {self.target!r}")
        require_positive_integers(
            self,
            ("budgets", "hessian_images", "hessian_probes", "sample_count"),
            "StrategyStudySettings.",
        )
        if self.hessian_probes < 2:
            raise InputError("StrategyStudySettings: hessian_probes must be >= 2")
        rounds = self.refine
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise InputError(
                f"StrategyStudySettings.refine must be an integer >= 0; got {rounds!r}"
            )
        backend_class(self.backend)

    @property
    def verify(self) -> int:
        """K, the configs measured from each predicted front in the refinement."""
        return self.search.verify

    @property
    def verified(self) -> int:
        """Configs each NSGA-II row (and random) measures per front: ``K·(R+1)``."""
        return self.verify * (self.refine + 1)


@dataclass(frozen=True)
class StrategyStudy:
    """What :func:`run_strategy_study` measured and wrote."""

    outcomes: list[StrategyOutcome]
    reference: tuple[float, float]
    scoring_images: int
    markdown: str
    report: Path
    plot: Path


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
            chosen.refine,
            chosen.verify,
            "nsga2-refined",
            f"NSGA-II + {chosen.backend}, refined {chosen.refine}× {chosen.verify}",
        ),
    ):
        refine = RefineSettings(
            rounds=rounds,
            per_round=per_round,
            backend=chosen.backend,
            predictor_seed=chosen.seed,
            population=chosen.search.population,
            generations=chosen.search.generations,
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
    markdown = strategies_markdown(
        outcomes,
        reference,
        n_images,
        target=chosen.target,
        weight_budgets=chosen.weight_budgets,
        n_samples=len(configs),
        checkpoint=location,
    )
    report = atomic_write_text(directory / REPORT_NAME, markdown + "\n")
    plot = plot_strategies(outcomes, directory / PLOT_NAME, str(supernet.build_info.get("model")))
    write_strategies_json(
        directory / RESULT_NAME,
        outcomes,
        reference,
        n_images,
        settings_record(chosen),
        samples_path,
    )
    return StrategyStudy(outcomes, reference, n_images, markdown, report, plot)


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
    add_front_search_arguments(parser, defaults.search, "K of the refinement")
    add_renamed_option(parser, "--per-round", "--verify", dest="verify", type=positive_int)
    add("--refine", type=integer, default=defaults.refine, help="R of the refinement")
    add("--backend", default=defaults.backend, help="predictor of the NSGA-II rows")
    add("--images", type=positive_int, default=defaults.hessian_images, help="Hessian images")
    add("--probes", type=positive_int, default=defaults.hessian_probes, help="Hessian probes")
    add(
        "--sample-count",
        type=positive_int,
        default=defaults.sample_count,
        help="subnets measured for the predictor when there is no samples file",
    )
    add_run_arguments(
        parser, seed=defaults.seed, seed_help="seeds every step", outputs="strategies.{md,png,json}"
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed flags; prints the markdown table. Returns an exit code."""
    if args.refine < 0:
        raise InputError(f"--refine must be >= 0; got {args.refine}")
    settings = StrategyStudySettings(
        target=args.target,
        budgets=args.budgets,
        backend=args.backend,
        refine=args.refine,
        search=front_search_from_args(args),
        hessian_images=args.images,
        hessian_probes=args.probes,
        sample_count=args.sample_count,
        seed=args.seed,
    )
    checkpoint = Path(args.supernet)
    if not checkpoint.is_file():
        raise InputError(f"supernet checkpoint not found: {checkpoint}")
    out = Path(args.out) if args.out else checkpoint.parent / "strategies"
    study_samples(checkpoint, Path(args.samples) if args.samples else None, out)
    log = progress_printer(not args.no_progress)
    result = run_in_directory(
        out,
        OUTPUTS,
        force=args.force,
        run=lambda: run_strategy_study(
            checkpoint, out, settings, samples=args.samples, device=args.device, log=log
        ),
    )
    return report_study(result.markdown, result.report, result.plot, out / RESULT_NAME)


main = study_entry("strategies")
"""``python -m studies.strategies``: ``eqsearch study strategies``."""


if __name__ == "__main__":
    raise SystemExit(main())
