"""Predictor-in-the-loop refinement: measure the predicted front, refit, search again."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from eqsearch.engines import ENGINES, nsga2
from eqsearch.errors import InputError
from eqsearch.oracle import AccuracyOracle
from eqsearch.pareto import ParetoFront
from eqsearch.problem import SearchProblem
from eqsearch.space import ConfigBatch, ElasticSpace, SubnetConfig
from eqsearch.strategies.front import candidate_front, concatenate

if TYPE_CHECKING:
    from supernet.evaluation.evaluate import EvaluationSet
    from supernet.networks.elastic import Supernet

FloatArray = npt.NDArray[np.float64]
ProblemFactory = Callable[[AccuracyOracle], SearchProblem]
"""Builds the search problem around an accuracy oracle (the same budgets every round)."""


@dataclass(frozen=True)
class RefineSettings:
    """How :func:`refine_search` runs.

    Args:
        rounds: refits after the first search (R of ``nsga --refine R``); 0 is the one-shot
            search with its front measured.
        per_round: configs measured per search, spread over the predicted front (K).
        backend: the predictor backend refitted each round, with ``options`` and
            ``predictor_seed``.
        engine, population, generations, seed: of each NSGA-II search (round r uses
            ``seed + r``).
    """

    rounds: int = 2
    per_round: int = 12
    backend: str = "xgboost"
    options: Mapping[str, Any] = field(default_factory=dict)
    predictor_seed: int = 0
    engine: str = "pymoo"
    population: int = 100
    generations: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        least = {"rounds": 0, "per_round": 1, "population": 2}
        for name, value in ((name, getattr(self, name)) for name in least):
            if isinstance(value, bool) or not isinstance(value, int) or value < least[name]:
                message = f"RefineSettings.{{field}} must be an integer >= {least[name]}"
                raise InputError(message, field=name)
        if self.engine not in ENGINES:
            known = ", ".join(ENGINES)
            message = f"RefineSettings.{{field}} must be one of {known}; got {self.engine!r}"
            raise InputError(message, field="engine")

    @property
    def measurements(self) -> int:
        """Supernet measurements of the whole loop: ``per_round · (rounds + 1)`` at most."""
        return self.per_round * (self.rounds + 1)


@dataclass(frozen=True)
class RefineRound:
    """One search of the loop: what the predictor was fitted on and what was measured."""

    index: int
    samples: int
    front_size: int
    measured: int
    kendall_tau: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the fields."""
        return {
            "round": self.index,
            "samples": self.samples,
            "front_size": self.front_size,
            "measured": self.measured,
            "kendall_tau": self.kendall_tau,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class RefineResult:
    """What :func:`refine_search` found.

    Attributes:
        front: the measured front: the feasible, non-dominated configs among every config
            measured in the loop, valued with their measured accuracy.
        predicted: the last search's predicted front, its measured configs marked.
        rounds: one entry per search.
        measured: every config measured in the loop, with ``accuracies``.
    """

    front: ParetoFront
    predicted: ParetoFront
    rounds: list[RefineRound]
    measured: ConfigBatch
    accuracies: FloatArray


class LookupOracle:
    """Accuracies of configs measured before (KeyError for one that was not)."""

    def __init__(self, space: ElasticSpace, values: Mapping[bytes, float]) -> None:
        self.space = space
        self.values = dict(values)

    def evaluate(self, configs: Sequence[SubnetConfig]) -> FloatArray:
        """The stored accuracy of every config."""
        keys = self.space.batch(configs).keys()
        return np.asarray([self.values[key] for key in keys], dtype=np.float64)


def spread_unmeasured(front: ParetoFront, measured: Mapping[bytes, float], k: int) -> list[int]:
    """Indices of up to ``k`` front configs not measured yet, spread evenly along the front."""
    keys = front.batch.keys()
    fresh = [index for index, key in enumerate(keys) if key not in measured]
    if len(fresh) <= k:
        return fresh
    positions = np.linspace(0, len(fresh) - 1, k)
    return sorted({fresh[round(float(position))] for position in positions})


def _kendall(predicted: FloatArray, measured: FloatArray) -> float | None:
    if len(predicted) < 2:
        return None
    from scipy.stats import kendalltau

    tau = float(kendalltau(predicted, measured).statistic)
    return tau if np.isfinite(tau) else None


def refine_search(
    problem_for: ProblemFactory,
    measure: AccuracyOracle,
    configs: Sequence[SubnetConfig],
    accuracies: npt.ArrayLike,
    settings: RefineSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RefineResult:
    """NSGA-II on a predictor, refitted ``settings.rounds`` times on what the loop measures.

    Each search measures ``per_round`` configs of its predicted front not measured before,
    spread along it, with ``measure`` (the supernet); they join the samples and the predictor
    is fitted again (from scratch, same backend, options and seed) for the next search. The
    result's front is measured, not predicted: every config measured in the loop, the
    feasible non-dominated ones valued by their measured accuracy.

    Args:
        problem_for: the search problem around an oracle (objectives and budgets).
        measure: the oracle whose accuracies are the truth (the supernet).
        configs, accuracies: the initial samples (measured the same way as ``measure``).
        settings: rounds, configs per round, predictor and NSGA-II settings.
        progress: called after each search with (searches done, searches in all).
    """
    from predictors import PredictorOracle, build_predictor

    sample_configs = list(configs)
    sample_accuracies = [float(value) for value in np.asarray(accuracies, dtype=np.float64)]
    if len(sample_configs) != len(sample_accuracies) or len(sample_configs) < 2:
        raise InputError("refine_search needs at least 2 samples, one accuracy per config")
    probe = problem_for(_NeverAsked())
    space = probe.space
    if "accuracy" not in probe.objective_names:
        raise InputError("refinement needs accuracy among the objectives")
    measured: dict[bytes, float] = {}
    picked: list[ConfigBatch] = []
    rounds: list[RefineRound] = []
    predicted: ParetoFront | None = None
    for index in range(settings.rounds + 1):
        started = time.perf_counter()
        predictor = build_predictor(
            settings.backend, space, seed=settings.predictor_seed, **dict(settings.options)
        )
        predictor.fit(sample_configs, np.asarray(sample_accuracies))
        problem = problem_for(PredictorOracle(predictor))
        front = nsga2(
            problem,
            engine=settings.engine,
            population=settings.population,
            generations=settings.generations,
            seed=settings.seed + index,
        )
        chosen = spread_unmeasured(front, measured, settings.per_round)
        batch = front.batch.take(np.asarray(chosen, dtype=np.int64))
        values = np.asarray(measure.evaluate(batch), dtype=np.float64) if chosen else np.empty(0)
        for key, value in zip(batch.keys(), values.tolist(), strict=True):
            measured[key] = value
        picked.append(batch)
        sample_configs.extend(batch.configs())
        sample_accuracies.extend(values.tolist())
        predicted = front.with_measured(chosen, values) if chosen else front
        rounds.append(
            RefineRound(
                index=index,
                samples=len(sample_configs) - len(chosen),
                front_size=len(front),
                measured=len(chosen),
                kendall_tau=_kendall(front.column("accuracy")[chosen], values),
                seconds=time.perf_counter() - started,
            )
        )
        if progress is not None:
            progress(index + 1, settings.rounds + 1)
    assert predicted is not None  # rounds + 1 >= 1 searches ran
    everything = concatenate(picked)
    final_problem = problem_for(LookupOracle(space, measured))
    info = {
        **predicted.info,
        "strategy": "nsga2-refined" if settings.rounds else "nsga2-verified",
        "refine_rounds": settings.rounds,
        "per_round": settings.per_round,
        "backend": settings.backend,
        "measurements": len(measured),
        "initial_samples": len(configs),
        "rounds": [entry.to_dict() for entry in rounds],
    }
    front = candidate_front(final_problem, everything, info)
    return RefineResult(
        front=front,
        predicted=predicted,
        rounds=rounds,
        measured=everything,
        accuracies=LookupOracle(space, measured).evaluate(everything),
    )


class _NeverAsked:
    """Stands in for the oracle while the problem's space and objectives are read."""

    def evaluate(self, configs: Sequence[SubnetConfig]) -> FloatArray:
        raise RuntimeError("refine_search asked the stand-in oracle for accuracies")


def scoring_evaluation(
    checkpoint: str | Path,
    samples_csv: str | Path | None,
    *,
    device: str = "cpu",
    loaded: tuple[Supernet, dict[str, Any]] | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    transforms: str | None = None,
) -> tuple[Supernet, EvaluationSet]:
    """The supernet of ``checkpoint`` and the images that score configs as the samples
    file's rows were scored (its recorded split, held-out images and BN images; the
    checkpoint's own holdout where ``samples_csv`` is None).

    ``loaded`` is the checkpoint's (supernet, payload) where the caller read it already (it
    is then not read again); ``dataset``, ``data_root`` and ``transforms`` override the
    checkpoint's data.

    Raises:
        InputError: the samples file records no source (its accuracies may come from another
            supernet), or was measured on another supernet (another file content).
    """
    from eqsearch.files import file_sha256
    from predictors.samples.sidecars import source_path
    from predictors.samples.source import read_samples_source
    from supernet.evaluation.evaluate import checkpoint_data, evaluation_set, stored_bn_images
    from supernet.files.checkpoint import load_supernet

    found = read_samples_source(samples_csv) if samples_csv is not None else None
    if samples_csv is not None and found is None:
        raise InputError(
            f"{samples_csv} has no {source_path(samples_csv).name} beside it: nothing shows "
            f"that its accuracies were measured on {checkpoint}, and new measurements join "
            "them; use samples that eqsearch sample measured on this checkpoint"
        )
    if found is not None and found[0].supernet_sha256 != file_sha256(checkpoint):
        raise InputError(
            f"{samples_csv} was measured on another supernet than {checkpoint} (the "
            "checkpoint's content differs); use the samples of this checkpoint"
        )
    supernet, stored = loaded or load_supernet(checkpoint, map_location=device)
    bn_images = stored_bn_images(stored)
    split, holdout, val_images = "holdout", None, None
    if found is not None:
        source = found[0]
        split, holdout, val_images = source.split, source.holdout, source.val_images
        bn_images = source.bn_images or bn_images
    data = checkpoint_data(
        stored, holdout=holdout, dataset=dataset, data_root=data_root, transforms=transforms
    )
    evaluation = evaluation_set(data, split=split, bn_images=bn_images, val_images=val_images)
    return supernet, evaluation


def samples_scoring_oracle(
    checkpoint: str | Path, samples_csv: str | Path, **options: Any
) -> AccuracyOracle:
    """The supernet as an oracle scoring like the samples file (see
    :func:`scoring_evaluation`, whose keyword ``options`` it takes), so that what it
    measures can join those samples."""
    from supernet.evaluation.evaluate import supernet_oracle

    return supernet_oracle(*scoring_evaluation(checkpoint, samples_csv, **options))
