"""Study: what joint search buys: joint, bits-only and architecture-only fronts on one supernet."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np

from eqsearch.app.commands.common import (
    add_renamed_option,
    non_negative_int,
    progress_printer,
)
from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text, check_outputs
from eqsearch.oracle import AccuracyOracle, CachedOracle
from eqsearch.space import ConfigBatch, ElasticSpace, QuantForm, SubnetConfig
from predictors.registry import backend_class
from studies.entry import add_run_arguments, report_study, run_in_directory, study_entry
from studies.front_search import FrontSearch, add_front_search_arguments, front_search_from_args
from studies.fronts import log_hypervolume
from studies.joint_report import (
    FrontOutcome,
    best_within,
    joint_markdown,
    plot_joint,
    write_joint_json,
)

REPORT_NAME = "joint.md"
PLOT_NAME = "joint.png"
RESULT_NAME = "joint.json"
OUTPUTS = {REPORT_NAME: "report", PLOT_NAME: "image", RESULT_NAME: "json"}
"""The files the study writes (name → kind, see ``eqsearch.files.KINDS``)."""


@dataclass(frozen=True)
class JointStudySettings:
    """What the joint-search study runs.

    Args:
        budgets: BitOPs budgets as fractions of the largest architecture's W8A8 BitOPs; the
            table gives each front's best measured accuracy within each.
        uniform_bits: the uniform W/A bits of the architecture-only fronts.
        arch_form: the one form of the architecture-only fronts (the others search forms).
        backend: the predictor of the joint space that drives every search, fitted on the
            samples and each family's own measurements.
        refine: refinement rounds after the first search of each family (each refits the
            predictor on what was measured, then searches again).
        search: every NSGA-II search and the configs of its predicted front measured on the
            supernet (at least 2).
        seed: seeds the predictor and the searches.
    """

    budgets: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    uniform_bits: tuple[int, ...] = (8, 4, 2)
    arch_form: str = "channel-sym-sym"
    backend: str = "xgboost"
    refine: int = 3
    # smaller than nsga's defaults: the study runs 3 families × 5 budgets × 4 rounds of them
    search: FrontSearch = FrontSearch(population=60, generations=100, verify=10)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.budgets or not all(0.0 < b <= 1.0 for b in self.budgets):
            raise InputError(f"JointStudySettings.budgets must be in (0, 1]; got {self.budgets}")
        if not self.uniform_bits:
            raise InputError("JointStudySettings.uniform_bits must name at least one bit width")
        QuantForm.parse(self.arch_form)
        backend_class(self.backend)
        self.search.require_verify(2, "JointStudySettings")
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or self.refine < 0:
            raise InputError(
                f"JointStudySettings.refine must be an integer >= 0; got {self.refine!r}"
            )


@dataclass
class JointStudy:
    """The fronts, the reference point and where the report went."""

    outcomes: list[FrontOutcome]
    reference: tuple[float, float]
    scoring_images: int
    markdown: str
    report: Path
    plot: Path


class ConvertingOracle:
    """An oracle that scores configs of another space: each is converted to a config of the
    wrapped oracle's space first (a plain list, never the other space's arrays)."""

    def __init__(
        self, oracle: AccuracyOracle, convert: Callable[[SubnetConfig], SubnetConfig]
    ) -> None:
        self.oracle = oracle
        self.convert = convert

    def evaluate(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        """Accuracy of each config, scored as its converted twin."""
        listed = configs.configs() if isinstance(configs, ConfigBatch) else list(configs)
        return np.asarray(self.oracle.evaluate([self.convert(c) for c in listed]), dtype=float)


def arch_only_space(space: ElasticSpace, bits: int, form: QuantForm) -> ElasticSpace:
    """The joint space with every searched layer at ``bits``/``bits`` and ``form``: only the
    architecture is left to search (pinned layers keep their bits)."""
    return replace(
        space,
        w_bits=(bits,),
        a_bits=(bits,),
        granularities=(form.w_granularity,),
        w_symmetries=(form.w_symmetric,),
        a_symmetries=(form.a_symmetric,),
    )


def run_joint_study(
    checkpoint: str | Path,
    out: str | Path,
    settings: JointStudySettings | None = None,
    *,
    samples: str | Path | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> JointStudy:
    """The joint front against the bits-only and architecture-only ones on one joint supernet.

    One predictor, fitted on the samples, drives NSGA-II over (a) the joint space
    (architecture, per-layer bits, form), (b) bits and forms on the largest architecture
    (its extracted static network's space, scored as the joint config it is) and (c) the
    architecture at each uniform bit width of ``settings.uniform_bits`` in one form. Of
    every predicted front ``settings.search.verify`` spread configs are measured on the supernet
    (same scoring images, same cached oracle); hypervolumes and best accuracies within each
    BitOPs budget come from those measurements. Writes ``joint.md``, ``joint.png`` and
    ``joint.json`` into ``out``.

    Raises:
        InputError: the checkpoint is not a joint supernet or has no samples, or a file of
            another kind sits at a report's name (checked before any work).
    """
    from eqsearch import costs
    from eqsearch.app.refine import scoring_evaluation
    from predictors import load_samples
    from supernet.evaluation.evaluate import supernet_oracle
    from supernet.networks.extract import extract

    chosen = settings or JointStudySettings()
    location = Path(checkpoint)
    directory = check_outputs(out, OUTPUTS, force=True)
    samples_path = study_samples(location, samples)
    supernet, evaluation = scoring_evaluation(location, samples_path, device=device)
    space = supernet.space
    if not space.is_joint:
        raise InputError(f"{location} is not a joint (elastic-architecture) supernet")
    configs, accuracies = load_samples(samples_path, space)
    measured_oracle = CachedOracle(supernet_oracle(supernet, evaluation), space)

    largest = space.largest()
    largest_arch = tuple(largest.arch_dict.items())
    static_space = extract(supernet, largest).space

    def on_largest(config: SubnetConfig) -> SubnetConfig:
        return space.canonical(SubnetConfig(config.choices, largest_arch))

    def same(config: SubnetConfig) -> SubnetConfig:
        return config

    form = QuantForm.parse(chosen.arch_form)
    families: list[tuple[str, str, ElasticSpace, Callable[[SubnetConfig], SubnetConfig]]] = [
        ("joint", "joint: architecture + per-layer bits + form", space, same),
        (
            "bits-only",
            "bits-only: per-layer bits + form, largest architecture",
            static_space,
            on_largest,
        ),
    ]
    for bits in chosen.uniform_bits:
        families.append(
            (
                f"arch-W{bits}A{bits}",
                f"architecture-only at W{bits}A{bits} ({chosen.arch_form})",
                arch_only_space(space, bits, form),
                same,
            )
        )
    top = float(costs.bitops(space, space.uniform(8, 8, form)))
    limits = (None, *(budget * top for budget in chosen.budgets))
    outcomes: list[FrontOutcome] = []
    for name, label, family_space, convert in families:
        outcome = _refined_front(
            name,
            label,
            space,
            family_space,
            convert,
            configs,
            accuracies,
            measured_oracle,
            chosen,
            limits,
        )
        outcome.bitops = np.asarray(costs.bitops(space, outcome.configs), dtype=float)
        outcomes.append(outcome)
        log(
            f"{label}: {len(outcome.configs)} configs measured, best {outcome.measured.max():.2f} %"
        )

    floor = min(float(outcome.measured.min()) for outcome in outcomes) - 1.0
    reference = (floor, top)
    for outcome in outcomes:
        outcome.hypervolume = log_hypervolume(outcome.measured, outcome.bitops, reference)
        outcome.best_at = {budget: best_within(outcome, budget * top) for budget in chosen.budgets}
    n_images = len(evaluation.labels)
    markdown = joint_markdown(outcomes, reference, n_images, chosen, len(configs), location)
    report = atomic_write_text(directory / REPORT_NAME, markdown + "\n")
    plot = plot_joint(outcomes, directory / PLOT_NAME, str(supernet.build_info.get("model")), top)
    write_joint_json(directory / RESULT_NAME, outcomes, reference, n_images, chosen, samples_path)
    return JointStudy(outcomes, reference, n_images, markdown, report, plot)


def study_samples(checkpoint: Path, samples: str | Path | None) -> Path:
    """The samples the study's predictor is fitted on: ``samples``, or ``samples.csv``
    beside the checkpoint.

    Raises:
        InputError: the file does not exist.
    """
    path = Path(samples) if samples is not None else checkpoint.parent / "samples.csv"
    if not path.is_file():
        raise InputError(f"samples file not found: {path} (run eqsearch sample first)")
    return path


def _refined_front(
    name: str,
    label: str,
    space: ElasticSpace,
    family_space: ElasticSpace,
    convert: Callable[[SubnetConfig], SubnetConfig],
    configs: Sequence[SubnetConfig],
    accuracies: np.ndarray,
    measured_oracle: AccuracyOracle,
    settings: JointStudySettings,
    limits: Sequence[float | None],
) -> FrontOutcome:
    """NSGA-II over one family on a predictor of the joint space, refitted ``refine`` times
    on the samples and the family's own measurements (predictor-in-the-loop refinement, as
    ``eqsearch nsga --refine``). Each round searches once per BitOPs limit (None: none; a
    limit the family cannot meet is skipped) and measures ``verify`` configs of each
    predicted front not measured before, spread along it. Returns every measured config."""
    from eqsearch.app.refine import spread_unmeasured
    from eqsearch.engines import nsga2
    from eqsearch.problem import make_problem
    from predictors import PredictorOracle, build_predictor

    pool_configs = list(configs)
    pool_accuracies = [float(value) for value in accuracies]
    seen: dict[bytes, float] = {}
    measured: list[float] = []
    predicted: list[float] = []
    joint_configs: list[SubnetConfig] = []
    for round_index in range(settings.refine + 1):
        predictor = build_predictor(settings.backend, space, seed=settings.seed)
        predictor.fit(pool_configs, np.asarray(pool_accuracies))
        oracle = ConvertingOracle(PredictorOracle(predictor), convert)
        for limit in limits:
            try:
                problem = make_problem(
                    family_space, oracle, objectives=("accuracy", "bitops"), bitops=limit
                )
            except ValueError:  # below the family's smallest BitOPs
                continue
            front = nsga2(
                problem,
                engine="pymoo",
                population=settings.search.population,
                generations=settings.search.generations,
                seed=settings.seed + round_index,
            )
            chosen = spread_unmeasured(front, seen, settings.search.verify)
            if not chosen:
                continue
            batch = front.batch.take(np.asarray(chosen, dtype=np.int64))
            converted = [convert(config) for config in batch.configs()]
            values = np.asarray(measured_oracle.evaluate(converted), dtype=float)
            guesses = front.column("accuracy")[chosen]
            for key, config, value, guess in zip(
                batch.keys(), converted, values.tolist(), guesses.tolist(), strict=True
            ):
                seen[key] = value
                joint_configs.append(config)
                measured.append(value)
                predicted.append(guess)
            pool_configs.extend(converted)
            pool_accuracies.extend(values.tolist())
    return FrontOutcome(
        name, label, np.empty(0), np.asarray(measured), np.asarray(predicted), joint_configs
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's options (shared by ``eqsearch study joint`` and ``python -m``)."""
    add = parser.add_argument
    add("--supernet", required=True, help="a trained joint supernet.pt (oqa_mbv3_*)")
    add("--samples", help="its measured samples (default: samples.csv beside it)")
    add("--out", required=True, help="directory of joint.{md,png,json}")
    add_front_search_arguments(parser, JointStudySettings().search, "configs measured per search")
    add(
        "--refine",
        type=non_negative_int,
        default=JointStudySettings().refine,
        help="refinement rounds per family (0: none)",
    )
    add_renamed_option(parser, "--rounds", "--refine", dest="refine", type=non_negative_int)
    add_run_arguments(
        parser,
        seed=0,
        seed_help="seeds the predictor and the searches",
        outputs="joint.{md,png,json}",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; prints the report."""
    settings = JointStudySettings(
        refine=args.refine, search=front_search_from_args(args), seed=args.seed
    )
    checkpoint = Path(args.supernet)
    if not checkpoint.is_file():
        raise InputError(f"supernet checkpoint not found: {checkpoint}")
    study_samples(checkpoint, args.samples)
    log = progress_printer(not args.no_progress)
    study = run_in_directory(
        args.out,
        OUTPUTS,
        force=args.force,
        run=lambda: run_joint_study(
            checkpoint, args.out, settings, samples=args.samples, device=args.device, log=log
        ),
    )
    return report_study(study.markdown, study.report, study.plot)


main = study_entry("joint")
"""``python -m studies.joint_search``: ``eqsearch study joint``."""


if __name__ == "__main__":
    raise SystemExit(main())
