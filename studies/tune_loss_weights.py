"""Optuna tuning of the supernet training loss weights (GPG λ, WDR weights, K_T, lr)."""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from eqsearch.app.commands.common import (
    add_force_argument,
    add_progress_argument,
    non_negative_int,
    positive_int,
    progress_printer,
)
from eqsearch.errors import InputError
from eqsearch.files import (
    atomic_save_figure,
    atomic_write_text,
    check_outputs,
    owned_directory,
)
from eqsearch.resources import check_memory, configs_memory_bytes
from studies.entry import study_entry
from studies.fp_init import shared_fp_checkpoint as shared_fp
from studies.probes import ProbeSet, bits_of
from studies.report import frame_table
from studies.tune_storage import open_storage, storage_url_with_driver
from supernet.training.config import TrainConfig
from supernet.training.loop import EpochReport, train_supernet

OBJECTIVES = ("single", "two")
DEFAULT_STUDY_NAME = "eqsearch-loss-weights"
BEST_CONFIG_NAME = "best_train_config.json"
OWNER = "study tune-loss"
"""How the study marks its directory: the workers of one study share it, and each rewrites
the study's summaries (``eqsearch.files.owned_directory``)."""
OUTPUTS = {
    "trials.csv": "table",
    BEST_CONFIG_NAME: "json",
    "history.png": "image",
    "importances.png": "image",
}
"""The study's summaries (name → kind, see ``eqsearch.files.KINDS``)."""
MAX_SAMPLER_SEED = 2**32 - 1
"""Largest seed of Optuna's samplers."""
MAX_PROBE_MIXED = 1000
"""Most mixed configs in the probe set: every probe is scored after every epoch of a trial."""


@dataclass(frozen=True)
class SearchRange:
    """Range of one tuned TrainConfig field."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise InputError(f"SearchRange needs low < high; got {self.low}, {self.high}")
        if self.log and self.low <= 0:
            raise InputError(f"a log SearchRange needs low > 0; got {self.low}")


DEFAULT_RANGES: dict[str, SearchRange] = {
    "gpg_weight": SearchRange(0.1, 0.9),
    "wdr_skew_weight": SearchRange(1e-3, 3.0, log=True),
    "wdr_kurtosis_weight": SearchRange(1e-4, 1.0, log=True),
    "target_kurtosis": SearchRange(1.5, 3.0),
    "lr": SearchRange(1e-4, 1e-2, log=True),
}


@dataclass(frozen=True)
class TuneConfig:
    """A tuning study.

    Args:
        base: the training settings every trial starts from (its seed is every trial's seed).
        out_dir: where the SQLite study, the trial table and the best config go.
        trials: trials this worker runs (several workers may share one storage).
        epochs: supernet epochs per trial.
        objectives: ``single`` (mean probe accuracy, with a median pruner on per-epoch
            values) or ``two`` (lowest-bit and highest-bit probe accuracy, NSGA-II sampler;
            Optuna does not prune multi-objective trials).
        storage: any SQLAlchemy URL (PostgreSQL for many machines); default
            ``sqlite:///<out_dir>/tuning.db``.
        study_name: a rerun with the same name continues the study.
        seed: the sampler's seed (give each concurrent worker its own).
        probe_mixed: random mixed configs in the probe set.
        ranges: the tuned fields and their ranges.
    """

    base: TrainConfig
    out_dir: str
    trials: int = 20
    epochs: int = 3
    objectives: str = "single"
    storage: str | None = None
    study_name: str = DEFAULT_STUDY_NAME
    seed: int = 0
    probe_mixed: int = 4
    ranges: tuple[tuple[str, SearchRange], ...] = tuple(DEFAULT_RANGES.items())

    def __post_init__(self) -> None:
        if self.objectives not in OBJECTIVES:
            raise InputError(f"objectives must be one of {OBJECTIVES}; got {self.objectives!r}")
        if self.trials < 0 or self.epochs < 1:
            raise InputError(
                f"trials must be >= 0 and epochs >= 1; got {self.trials}, {self.epochs}"
            )
        for name, high in (("seed", MAX_SAMPLER_SEED), ("probe_mixed", MAX_PROBE_MIXED)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise InputError(f"{name} must be an integer in 0..{high}; got {value!r}")
        known = set(TrainConfig.__dataclass_fields__)
        for name, _ in self.ranges:
            if name not in known:
                raise InputError(f"cannot tune {name!r}: not a TrainConfig field")
        # before the first trial trains: the probes are drawn after its first epoch
        check_memory(configs_memory_bytes(self.probe_mixed, 1), f"probe_mixed={self.probe_mixed}")

    def storage_url(self) -> str:
        """The storage URL (the SQLite file in ``out_dir`` by default)."""
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(self.out_dir) / 'tuning.db').resolve()}"


def shared_fp_checkpoint(tune: TuneConfig) -> Path | None:
    """The study's shared FP model (see :func:`studies.fp_init.shared_fp_checkpoint`)."""
    return shared_fp(tune.base, tune.out_dir)


def suggest_config(trial: optuna.Trial, tune: TuneConfig, init: Path | None = None) -> TrainConfig:
    """The trial's TrainConfig: the base with suggested loss weights and ``tune.epochs``.

    With ``init`` (the study's shared FP model) the trial skips its own FP pretraining.
    """
    values: dict[str, Any] = {}
    for name, search in tune.ranges:
        values[name] = trial.suggest_float(name, search.low, search.high, log=search.log)
    if init is not None:
        values.update(init=str(init), fp_epochs=0)
    return replace(tune.base, epochs=tune.epochs, **values)


def _scores(accuracies: dict[str, float]) -> dict[str, float]:
    by_bits: dict[int, list[float]] = {}
    for name, accuracy in accuracies.items():
        bits = bits_of(name)
        if bits is not None:
            by_bits.setdefault(bits, []).append(accuracy)
    lowest, highest = min(by_bits), max(by_bits)
    return {
        "mean": sum(accuracies.values()) / len(accuracies),
        "lowest": sum(by_bits[lowest]) / len(by_bits[lowest]),
        "highest": sum(by_bits[highest]) / len(by_bits[highest]),
    }


def make_objective(
    tune: TuneConfig,
) -> Callable[[optuna.Trial], float | tuple[float, float]]:
    """The trial function: train briefly, score the probe set after every epoch."""

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        config = suggest_config(trial, tune, shared_fp_checkpoint(tune))
        probes: list[ProbeSet] = []
        last: dict[str, float] = {}

        def on_epoch(report: EpochReport) -> None:
            if not probes:
                probes.append(
                    ProbeSet.build(report.supernet.space, mixed=tune.probe_mixed, seed=config.seed)
                )
            accuracies = probes[0].evaluate(report.supernet, report.data, config.bn_images)
            last.clear()
            last.update(_scores(accuracies))
            trial.set_user_attr("epochs_trained", report.epoch + 1)
            report.entry["probe_mean"] = last["mean"]
            if tune.objectives == "single":
                trial.report(last["mean"], report.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {report.epoch + 1}")

        train_supernet(config, None, progress=False, on_epoch=on_epoch)
        trial.set_user_attr("probe_lowest", last["lowest"])
        trial.set_user_attr("probe_highest", last["highest"])
        if tune.objectives == "single":
            return last["mean"]
        return last["lowest"], last["highest"]

    return objective


def open_study(tune: TuneConfig) -> optuna.Study:
    """Create the study, or load it when the name exists in the storage."""
    Path(tune.out_dir).mkdir(parents=True, exist_ok=True)
    if tune.objectives == "single":
        return optuna.create_study(
            study_name=tune.study_name,
            storage=open_storage(tune.storage_url()),
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=tune.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            load_if_exists=True,
        )
    return optuna.create_study(
        study_name=tune.study_name,
        storage=open_storage(tune.storage_url()),
        directions=["maximize", "maximize"],
        sampler=optuna.samplers.NSGAIISampler(seed=tune.seed),
        load_if_exists=True,
    )


@dataclass
class TuneResult:
    """A finished tuning run: the study, its trials, importances, the best config."""

    study: optuna.Study
    trials: pd.DataFrame
    importances: dict[str, float]
    best_config: TrainConfig | None
    best_config_path: Path | None
    plots: list[Path] = field(default_factory=list)


def _best_trial(study: optuna.Study, objectives: str) -> optuna.trial.FrozenTrial | None:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    if objectives == "single":
        return study.best_trial
    # the Pareto trial with the best lowest-bit accuracy among the best highest-bit ones
    front = study.best_trials
    return max(front, key=lambda t: (t.values[0] + t.values[1], t.values[0]))


def summarise(study: optuna.Study, tune: TuneConfig) -> TuneResult:
    """Trial table, parameter importances, and the best parameters as a TrainConfig JSON."""
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs"))
    if tune.objectives == "two" and "values_0" in frame:
        frame = frame.rename(columns={"values_0": "lowest_bits", "values_1": "highest_bits"})
    importances: dict[str, float] = {}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) >= 2:
        # PED-ANOVA ranks parameters by how they reach *low* target values; the study
        # maximises (the lowest-bit accuracy with two objectives), hence the minus.
        def target(trial: optuna.trial.FrozenTrial) -> float:
            return -float(trial.values[0])

        try:
            with warnings.catch_warnings():
                # its reminder that it favours low targets: the minus above takes care of it
                warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator")
                importances = dict(
                    optuna.importance.get_param_importances(
                        study,
                        target=target,
                        evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                    )
                )
        except (RuntimeError, ValueError):
            importances = {}
    best = _best_trial(study, tune.objectives)
    best_config = best_path = None
    if best is not None:
        best_config = replace(tune.base, **best.params)
        best_path = Path(tune.out_dir) / BEST_CONFIG_NAME
        best_config.to_json(best_path)
    atomic_write_text(Path(tune.out_dir) / "trials.csv", frame.to_csv(index=False))
    return TuneResult(study, frame, importances, best_config, best_path)


def tune_loss_weights(
    tune: TuneConfig, *, callbacks: list[Callable[[optuna.Study, Any], None]] | None = None
) -> TuneResult:
    """Run ``tune.trials`` trials of the study (creating or continuing it) and summarise."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(tune)
    if tune.trials:
        study.optimize(
            make_objective(tune),
            n_trials=tune.trials,
            callbacks=callbacks,
            catch=(),
        )
    result = summarise(study, tune)
    result.plots = write_plots(study, tune)
    return result


PLOT_NAMES = ("history.png", "importances.png")


def write_plots(study: optuna.Study, tune: TuneConfig) -> list[Path]:
    """Optuna's optimization history and parameter importances as PNGs in ``tune.out_dir``.

    With two objectives both plot the lowest-bit accuracy. The importances need two finished
    trials; before that only the history is written. Returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return []
    keyword: dict[str, Any] = {}
    if tune.objectives == "two":
        keyword = {"target": lambda t: t.values[0], "target_name": "lowest-bit accuracy"}
    out = Path(tune.out_dir)
    written: list[Path] = []
    drawers: list[tuple[str, Callable[[], Any]]] = [
        (PLOT_NAMES[0], lambda: optuna_plots.plot_optimization_history(study, **keyword))
    ]
    if len(complete) >= 2:
        drawers.append(
            (
                PLOT_NAMES[1],
                lambda: optuna_plots.plot_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), **keyword
                ),
            )
        )
    for name, draw in drawers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" notices of optuna's matplotlib API
            try:
                axes = draw()
            except (RuntimeError, ValueError):  # e.g. importances of constant parameters
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        written.append(atomic_save_figure(figure, out / name, dpi=110))
        plt.close(figure)
    return written


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One line per finished trial: its number, state and value(s) (pruned trials say so)."""
    state = trial.state.name.lower()
    if trial.state == optuna.trial.TrialState.PRUNED:
        epochs = trial.user_attrs.get("epochs_trained", "?")
        last = trial.intermediate_values.get(max(trial.intermediate_values, default=-1))
        shown = f"{last:.2f}" if last is not None else "-"
        return f"trial {trial.number}: pruned after epoch {epochs} (last probe mean {shown})"
    if trial.values is None:
        return f"trial {trial.number}: {state}"
    values = ", ".join(f"{value:.2f}" for value in trial.values)
    return f"trial {trial.number}: {state} ({values})"


def format_report(result: TuneResult) -> str:
    """Markdown: the trials, the importances, the best parameters."""
    lines = ["## Trials", "", frame_table(result.trials, index=False), ""]
    if result.importances:
        lines += ["## Parameter importance (PED-ANOVA)", ""]
        lines += [f"- {name}: {value:.3f}" for name, value in result.importances.items()]
        lines.append("")
    if result.best_config is not None:
        lines += ["## Best parameters", ""]
        best = result.best_config.to_dict()
        for name in DEFAULT_RANGES:
            value = best.get(name)
            if isinstance(value, float) and not math.isnan(value):
                lines.append(f"- {name}: {value:.4g}")
        lines += ["", f"`eqsearch train --config {result.best_config_path} --out ...`"]
    return "\n".join(lines)


DEFAULT_BASE = TrainConfig(model="lenet5", dataset="mnist5k", fp_epochs=10)
"""The base of ``eqsearch study tune-loss`` without ``--config``: LeNet-5 on MNIST-5k, FP
pretraining (shared by all trials) for 10 epochs."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``eqsearch study tune-loss``."""
    parser.add_argument("--out", required=True, help="study directory (tuning.db, trials.csv)")
    parser.add_argument(
        "--config", help="base TrainConfig, JSON or YAML (default: lenet5 on mnist5k)"
    )
    parser.add_argument(
        "--trials", type=non_negative_int, default=20, help="trials this worker runs"
    )
    parser.add_argument("--epochs", type=positive_int, default=3, help="supernet epochs per trial")
    parser.add_argument(
        "--objectives",
        default="single",
        choices=OBJECTIVES,
        help="single: mean probe accuracy (pruned trials); two: lowest and highest bits",
    )
    parser.add_argument("--storage", help="SQLAlchemy URL (default: sqlite in --out)")
    parser.add_argument(
        "--study-name", default=DEFAULT_STUDY_NAME, help="workers of one study share this name"
    )
    parser.add_argument(
        "--seed", type=sampler_seed, default=0, help="sampler seed (one per worker)"
    )
    parser.add_argument(
        "--probe-mixed",
        type=non_negative_int,
        default=4,
        help=f"mixed configs in the probes (at most {MAX_PROBE_MIXED})",
    )
    add_force_argument(parser, "trials.csv, best_train_config.json and the plots")
    add_progress_argument(parser)


def sampler_seed(text: str) -> int:
    """``--seed``: an integer in 0..2^32-1 (the range Optuna's samplers take)."""
    value = non_negative_int(text)
    if value > MAX_SAMPLER_SEED:
        raise argparse.ArgumentTypeError(f"a sampler seed must be in 0..2**32-1; got {text}")
    return value


def run_from_args(args: argparse.Namespace) -> int:
    """Run the tuning worker from parsed options and print the report.

    Every value is checked before any work; the study directory is shared (locked shared) by
    the workers of one study, which rewrite its summaries; elsewhere existing files at the
    summaries' names are replaced only with ``--force``.
    """
    base = TrainConfig.from_file(args.config) if args.config else DEFAULT_BASE
    tune = TuneConfig(
        base=base,
        out_dir=args.out,
        trials=args.trials,
        epochs=args.epochs,
        objectives=args.objectives,
        storage=args.storage,
        study_name=args.study_name,
        seed=args.seed,
        probe_mixed=args.probe_mixed,
    )
    storage_url_with_driver(tune.storage_url())
    check_outputs(args.out, OUTPUTS, force=args.force, owner=OWNER)
    show = progress_printer(not args.no_progress)

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        show(trial_line(trial))

    with owned_directory(args.out, OWNER, what="the study directory", shared=True):
        result = tune_loss_weights(tune, callbacks=[announce])
    print(format_report(result))
    if result.plots:
        print("plots: " + ", ".join(str(path) for path in result.plots))
    return 0


main = study_entry("tune-loss")
"""``python -m studies.tune_loss_weights``: ``eqsearch study tune-loss``."""


if __name__ == "__main__":
    raise SystemExit(main())
