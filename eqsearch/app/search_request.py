"""What a search of a trained supernet asks for: one typed, validated request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eqsearch.app.scoring_options import ScoringOptions
from eqsearch.errors import InputError

ORACLES = ("predictor", "supernet")
"""Where a search's accuracy comes from: a fitted predictor or the supernet itself."""

BUDGET_FIELDS = ("w_bits", "a_bits", "bitops", "size", "macs", "latency_ms")
"""The request's budgets, in the order the problem takes them."""

PROBLEM_BUDGETS = {"size": "size_bytes"}
"""Request budgets whose ``make_problem`` keyword is spelled otherwise."""

STRATEGY_FIELDS = ("sensitivity", "sweep", "budgets", "count")
"""Settings of the strategies only (NSGA-II engines take none of them)."""

SENSITIVITY_METHODS = ("hessian", "measured")


def _whole(value: object, smallest: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= smallest


@dataclass(frozen=True)
class SearchRequest(ScoringOptions):
    """One search of a trained ``supernet.pt`` for its Pareto front of configs.

    Args:
        supernet: the checkpoint searched (read once).
        solver: a name of the solver registry (:mod:`eqsearch.search.solvers`): an NSGA-II
            engine (``pymoo``, ``deap``) or a strategy (``ilp``, ``greedy``, ``uniform``,
            ``random``).
        objectives: objective names (or one comma-separated string).
        target, forms_per_layer: the allowed forms (a hardware preset), one per layer.
        w_bits, a_bits, bitops, size, macs, latency_ms: budgets (None: unconstrained).
        latency_table: the table of the latency objective/budget (default: beside the
            checkpoint).
        oracle: ``predictor`` or ``supernet`` (default: predictor for an engine, supernet
            for a strategy); ``predictor`` the fitted file (default: the newest beside the
            checkpoint).
        population, generations, seed: of NSGA-II (the seed also of a random strategy and
            the Hessian probes).
        verify: front configs measured on the supernet (K); ``refine``: refits (R) of the
            predictor on ``samples`` and what the loop measures.
        sensitivity, sweep, budgets, count, images, probes: the strategies' settings.
        out, force: the front's directory (default: the checkpoint's), replacing its files.
        bn_images, val_images, device, dataset, data_root, transforms: how the supernet
            scores subnets (see :class:`~eqsearch.app.scoring_options.ScoringOptions`).
        log: tracking backends the front goes to besides its files (``jsonl``,
            ``tensorboard``, ``mlflow``).
    """

    supernet: str | Path
    solver: str = "pymoo"
    objectives: Sequence[str] | str = ("accuracy", "bitops")
    target: str = "any"
    forms_per_layer: bool = False
    w_bits: float | None = None
    a_bits: float | None = None
    bitops: float | None = None
    size: float | None = None
    macs: float | None = None
    latency_ms: float | None = None
    latency_table: str | Path | None = None
    oracle: str | None = None
    predictor: str | Path | None = None
    population: int = 100
    generations: int = 500
    seed: int = 0
    verify: int = 0
    refine: int = 0
    samples: str | Path | None = None
    sensitivity: str | None = None
    sweep: str | None = None
    budgets: int | None = None
    count: int | None = None
    images: int = 256
    probes: int = 16
    out: str | Path | None = None
    force: bool = False
    log: Sequence[str] = ()

    def __post_init__(self) -> None:
        from eqsearch.engines import ENGINES
        from eqsearch.strategies import STRATEGIES

        if self.solver not in ENGINES + STRATEGIES:
            raise InputError(
                f"{{field}} must be one of {', '.join(ENGINES + STRATEGIES)}; got {self.solver!r}",
                field="solver",
            )
        if self.oracle is None:
            object.__setattr__(self, "oracle", "predictor" if self.is_nsga else "supernet")
        if self.oracle not in ORACLES:
            raise InputError(
                f"{{field}} must be one of {', '.join(ORACLES)}; got {self.oracle!r}",
                field="oracle",
            )
        object.__setattr__(self, "objectives", self._objective_names())
        object.__setattr__(self, "log", self._log_backends())
        self._check_counts()
        self._check_family()
        self._check_refinement()

    @property
    def is_nsga(self) -> bool:
        """Whether the solver is an NSGA-II engine (else a strategy)."""
        from eqsearch.engines import ENGINES

        return self.solver in ENGINES

    @property
    def problem_budgets(self) -> dict[str, float | None]:
        """The budgets by ``make_problem``'s keywords."""
        return {PROBLEM_BUDGETS.get(name, name): getattr(self, name) for name in BUDGET_FIELDS}

    @property
    def needs_supernet(self) -> bool:
        """Whether the search scores subnets on the supernet (oracle, --verify, --refine,
        sensitivities), so that the checkpoint is loaded as a network."""
        from eqsearch.strategies import NEEDS_SENSITIVITIES

        scores = self.oracle == "supernet" and "accuracy" in self.objectives
        return scores or bool(self.verify or self.refine) or self.solver in NEEDS_SENSITIVITIES

    @property
    def output_directory(self) -> Path:
        """Where the front's files go: ``out``, or the checkpoint's folder."""
        return Path(self.out) if self.out is not None else Path(self.supernet).parent

    def _objective_names(self) -> tuple[str, ...]:
        from eqsearch.problem import OBJECTIVE_NAMES

        given = self.objectives
        parts = given.split(",") if isinstance(given, str) else list(given)
        names = tuple(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))
        if not names:
            raise InputError("{field} must name at least one objective", field="objectives")
        unknown = [name for name in names if name not in OBJECTIVE_NAMES]
        if unknown:
            raise InputError(
                f"{{field}} must be among {', '.join(OBJECTIVE_NAMES)}; got {unknown[0]!r}",
                field="objectives",
            )
        return names

    def _log_backends(self) -> tuple[str, ...]:
        from eqsearch.app.front_tracking import LOG_BACKENDS

        given = self.log
        parts = given.split(",") if isinstance(given, str) else list(given)
        names = tuple(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))
        unknown = [name for name in names if name not in LOG_BACKENDS]
        if unknown or (isinstance(given, str) and not names):
            raise InputError(
                f"{{field}} takes {', '.join(LOG_BACKENDS)} (comma-separated); got {given!r}",
                field="log",
            )
        return names

    def _check_counts(self) -> None:
        for name, smallest in (
            ("population", 2),
            ("generations", 0),
            ("seed", 0),
            ("verify", 0),
            ("refine", 0),
            ("images", 1),
            ("probes", 1),
        ):
            value = getattr(self, name)
            if not _whole(value, smallest):
                what = "at least 2" if smallest == 2 else f"an integer >= {smallest}"
                raise InputError(f"{{field}} must be {what}; got {value!r}", field=name)
        self.check_scoring()
        for name in ("budgets", "count"):
            value = getattr(self, name)
            if value is not None and not _whole(value, 1):
                raise InputError(f"{{field}} must be a positive integer; got {value!r}", field=name)
        for name in BUDGET_FIELDS:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            ):
                raise InputError(f"{{field}} must be a positive number; got {value!r}", field=name)

    def _check_family(self) -> None:
        if self.sensitivity is not None and self.sensitivity not in SENSITIVITY_METHODS:
            raise InputError(
                f"{{field}} must be one of {', '.join(SENSITIVITY_METHODS)}; got "
                f"{self.sensitivity!r}",
                field="sensitivity",
            )
        if self.is_nsga:
            given = [name for name in STRATEGY_FIELDS if getattr(self, name) is not None]
            if given:
                raise InputError(
                    f"{{field}} is a strategy's setting; the {self.solver} engine does not take it",
                    field=given[0],
                )
            return
        from eqsearch.strategies import NEEDS_SENSITIVITIES

        needs = self.solver in NEEDS_SENSITIVITIES
        for name, misplaced, applies in (
            ("sensitivity", self.sensitivity is not None, needs),
            ("sweep", self.sweep is not None, needs),
            ("budgets", self.budgets is not None, needs),
            ("count", self.count is not None, self.solver == "random"),
            ("predictor", self.predictor is not None, self.oracle == "predictor"),
            ("verify", self.verify > 0, False),
            ("refine", self.refine > 0, False),
            ("forms_per_layer", self.forms_per_layer, False),
        ):
            if misplaced and not applies:
                raise InputError(
                    f"{{field}} does not apply to the {self.solver} strategy with the "
                    f"{self.oracle} oracle",
                    field=name,
                )

    def _check_refinement(self) -> None:
        if not self.refine:
            if self.samples is not None:
                raise InputError("{field} is read by --refine R only", field="samples")
            return
        if self.oracle != "predictor":
            raise InputError(
                "{field} refits the predictor; it needs --oracle predictor", field="refine"
            )
        if not self.verify:
            raise InputError(
                "{field} R measures --verify K configs per search; give --verify K",
                field="refine",
            )
        if "accuracy" not in self.objectives:
            raise InputError("{field} needs accuracy among the --objectives", field="refine")
        if self.latency_ms is not None or "latency" in self.objectives:
            raise InputError(
                "{field} does not take a latency objective or budget yet", field="refine"
            )
