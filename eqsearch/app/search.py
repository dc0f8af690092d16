"""``search_checkpoint(SearchRequest) -> SearchOutcome``: a trained supernet's Pareto front."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.search_inputs import (
    LoadedCheckpoint,
    NoOracle,
    check_front_directory,
    latency_table,
    predictor_oracle,
    read_checkpoint,
    scoring_images,
    with_predictor_source,
)
from eqsearch.app.search_request import SearchRequest
from eqsearch.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.app.refine import RefineRound
    from eqsearch.oracle import AccuracyOracle
    from eqsearch.pareto import ParetoFront
    from eqsearch.problem import SearchProblem
    from supernet.evaluation.evaluate import EvaluationSet

__all__ = ["SearchOutcome", "SearchRequest", "search_checkpoint", "with_oracle"]


@dataclass(frozen=True)
class SearchOutcome:
    """What :func:`search_checkpoint` found and wrote.

    Attributes:
        front: the Pareto front written (measured accuracies where verified or refined).
        paths: the files written (``pareto.{json,csv,png}``, tracking files).
        tau: Kendall's τ between predicted and measured accuracy of the verified configs.
        rounds: ``refine``'s searches, one entry each.
        measured: configs measured on the supernet (None where nothing was).
    """

    front: ParetoFront
    paths: tuple[Path, ...]
    tau: float | None = None
    rounds: tuple[RefineRound, ...] = ()
    measured: int | None = None

    @property
    def title(self) -> str:
        """The front's title (model, solver, target, budgets)."""
        return str(self.front.info.get("title", ""))


def search_checkpoint(
    request: SearchRequest, *, console: Console | None = None, progress: bool = False
) -> SearchOutcome:
    """Search ``request.supernet`` with ``request.solver`` and write the front.

    The checkpoint is read once (the network too where the search scores subnets on it),
    its weights checked once, the problem built and its budgets checked once.

    Args:
        request: what to search and how.
        console: where status lines and the predictor chosen are printed (none by default).
        progress: show a progress bar or spinner on ``console``.

    Raises:
        InputError: bad input (naming the request's field where one is at fault).
    """
    from rich.console import Console

    from eqsearch.locks import hold_directory
    from supernet.training.tracking import check_backends

    check_backends(request.log)  # a missing package is named before any work
    shown = console if console is not None else Console(quiet=True)
    out = check_front_directory(request.output_directory, request.force)
    with hold_directory(out, what="the output directory"):
        return CheckpointSearch(request, out, shown, progress).run()


def with_oracle(problem: SearchProblem, oracle: AccuracyOracle) -> SearchProblem:
    """``problem`` with its accuracy objective asking ``oracle`` (budgets not checked again)."""
    from eqsearch.problem import accuracy_objective

    objectives = [
        accuracy_objective(oracle) if objective.name == "accuracy" else objective
        for objective in problem.objectives
    ]
    return replace(problem, objectives=objectives)


class CheckpointSearch:
    """One search under way: its inputs read once, then the solver, verification, files."""

    def __init__(self, request: SearchRequest, out: Path, console: Console, progress: bool):
        self.request = request
        self.out = out
        self.console = console
        self.progress = progress
        self._images: EvaluationSet | None = None
        self.loaded: LoadedCheckpoint
        self.latency: Any = None

    def status(self, text: str) -> Any:
        from eqsearch.app.console import status

        return status(self.console, text, self.progress)

    def run(self) -> SearchOutcome:
        request = self.request
        remedy = "search a supernet.pt" if request.is_nsga else "use a supernet.pt"
        reading = self.status("reading the supernet") if request.needs_supernet else nullcontext()
        with reading:
            self.loaded = read_checkpoint(
                request.supernet,
                remedy,
                with_supernet=request.needs_supernet,
                device=request.device,
            )
        space = self.loaded.space
        if not request.is_nsga:
            from eqsearch.strategies import require_fixed_architecture

            require_fixed_architecture(space, f"the {request.solver} strategy")
        needed = "latency" in request.objectives or request.latency_ms is not None
        self.latency = latency_table(request.latency_table, request.supernet, space, needed=needed)
        self.problem = self._problem()
        if request.refine:
            return self._refine()
        oracle = self._oracle()
        problem = with_oracle(self.problem, oracle)
        front = with_predictor_source(self.annotate(self._solve(problem)), oracle)
        if self.latency is not None:
            front = front.with_column("latency_ms", self.latency.predict(front.batch))
        tau = None
        measured = front.info.get("evaluated") if request.oracle == "supernet" else None
        if request.verify:
            front, tau = self._verify(front)
            measured = min(request.verify, len(front))
        return self.finish(front, tau=tau, measured=measured)

    def _refine(self) -> SearchOutcome:
        """Refit the predictor on what each search's front measures (``request.refine``
        times) and write the measured front."""
        from eqsearch.app.refine import RefineSettings, refine_search, samples_scoring_oracle
        from eqsearch.app.search_inputs import trust_named_dataset
        from predictors import load_samples

        request, loaded = self.request, self.loaded
        samples = Path(request.samples) if request.samples else loaded.path.parent / "samples.csv"
        if not samples.is_file():
            raise InputError(
                f"{{field}} refits the predictor on its samples: {samples} not found (give "
                "--samples)",
                field="refine",
            )
        start = predictor_oracle(request.supernet, request.predictor, loaded.space, self.console)
        predictor = start.predictor  # type: ignore[attr-defined]  # its backend is refitted
        configs, accuracies = load_samples(samples, loaded.space)
        trust_named_dataset(request.dataset)
        with self.status("loading the supernet's scoring images"):
            supernet = (loaded.need_supernet(), loaded.payload)
            measure = samples_scoring_oracle(
                loaded.path, samples, loaded=supernet, **request.data_options
            )
        settings = RefineSettings(
            rounds=request.refine,
            per_round=request.verify,
            backend=predictor.name,
            options=predictor.options_dict(),
            predictor_seed=predictor.seed,
            engine=request.solver,
            population=request.population,
            generations=request.generations,
            seed=request.seed,
        )
        searches = f"{request.refine + 1} searches, {request.verify} configs measured after each"
        with self.status(searches):
            result = refine_search(
                lambda oracle: with_oracle(self.problem, oracle),
                measure,
                configs,
                accuracies,
                settings,
            )
        front = self.annotate(result.front, f"NSGA-II refined {request.refine}× ({request.solver})")
        front = with_predictor_source(front, start)
        front = replace(front, info={**front.info, "samples": str(samples)})
        return self.finish(front, rounds=tuple(result.rounds), measured=len(result.measured))

    def finish(self, front: ParetoFront, **details: Any) -> SearchOutcome:
        """Write the front and its tracking files; the outcome."""
        from eqsearch.app.front_tracking import log_front

        paths = list(front.write(self.out))
        paths += log_front(front, self.out, self.request, tau=details.get("tau"))
        return SearchOutcome(front, tuple(paths), **details)

    def images(self) -> EvaluationSet:
        """The held-out scoring images (built once, on first use)."""
        if self._images is None:
            request = self.request
            self._images = scoring_images(
                self.loaded, request.bn_images, request.val_images, request.data_options
            )
        return self._images

    def measuring_oracle(self) -> AccuracyOracle:
        """The supernet scoring subnets on the held-out images."""
        from supernet.evaluation.evaluate import supernet_oracle

        supernet = self.loaded.need_supernet()
        with self.status("loading the supernet's scoring images"):
            images = self.images()
        return supernet_oracle(supernet, images)

    def _problem(self) -> SearchProblem:
        from eqsearch.engines import search_memory_bytes
        from eqsearch.problem import make_problem
        from eqsearch.resources import check_memory

        request = self.request
        problem = make_problem(
            self.loaded.space,
            NoOracle(),
            objectives=request.objectives,
            target=request.target,
            forms_per_layer=request.forms_per_layer,
            latency=self.latency,
            **request.problem_budgets,
        )
        if request.forms_per_layer and len(problem.layout.forms) == 1:
            raise InputError(
                f"{{field}} chooses among several forms, but --target {request.target} allows "
                f"one ({problem.layout.forms[0]}); use --target any",
                field="forms_per_layer",
            )
        if request.is_nsga:
            check_memory(
                search_memory_bytes(problem, request.population, request.generations),
                f"--population {request.population} with --generations {request.generations}",
            )
        else:
            _check_strategy_memory(request, problem)
        return problem

    def _oracle(self) -> AccuracyOracle:
        request = self.request
        if "accuracy" not in request.objectives:
            return NoOracle()
        if request.oracle == "supernet":
            return self.measuring_oracle()
        return predictor_oracle(
            request.supernet, request.predictor, self.loaded.space, self.console
        )

    def _solve(self, problem: SearchProblem) -> ParetoFront:
        request = self.request
        if request.is_nsga:
            from eqsearch.app.console import generation_bar
            from eqsearch.engines import nsga2

            description = f"NSGA-II ({request.solver}) generations"
            with generation_bar(
                self.console, description, request.generations, self.progress
            ) as bar:
                return nsga2(
                    problem,
                    engine=request.solver,
                    population=request.population,
                    generations=request.generations,
                    seed=request.seed,
                    progress=bar,
                )
        from eqsearch.strategies import run_strategy

        supernet = request.oracle == "supernet" and "accuracy" in request.objectives
        what = "measuring its configs on the supernet" if supernet else "searching"
        sensitivities = self._sensitivities(problem)
        with self.status(f"{request.solver}: {what}"):
            try:
                return run_strategy(
                    request.solver,
                    problem,
                    sensitivities=sensitivities,
                    sweep=request.sweep,
                    budgets=request.budgets,
                    count=request.count or 100,
                    seed=request.seed,
                )
            except InputError:
                raise
            except ValueError as error:  # a strategy's refusal of its settings is bad input
                raise InputError(str(error)) from None

    def _sensitivities(self, problem: SearchProblem) -> Any:
        from eqsearch.strategies import NEEDS_SENSITIVITIES

        request = self.request
        if request.solver not in NEEDS_SENSITIVITIES:
            return None
        from supernet.evaluation.sensitivity import checkpoint_sensitivities

        method = request.sensitivity or "hessian"
        images = self.images()
        with self.status(f"{method} sensitivities of every elastic layer"):
            cached = checkpoint_sensitivities(
                request.supernet,
                method,
                supernet=self.loaded.need_supernet(),
                evaluation=images,
                forms=problem.layout.forms,
                images=request.images,
                probes=request.probes,
                seed=request.seed,
            )
        if cached.reused or cached.kept:
            verb = "reused" if cached.reused else "computed and cached"
            self.console.print(f"{method} sensitivities {verb}: {cached.path}")
        return cached.sensitivities

    def _verify(self, front: ParetoFront) -> tuple[ParetoFront, float | None]:
        from eqsearch.app.measure import verify_front

        request = self.request
        oracle = self.measuring_oracle()
        count = min(request.verify, len(front))
        with self.status(f"measuring {count} configs on the supernet"):
            front, tau = verify_front(front, oracle, request.verify)
        if self.latency is not None:
            front = self._verify_latency(front)
        return front, tau

    def _verify_latency(self, front: ParetoFront) -> ParetoFront:
        """Measure the verified configs' latency on the table's runtime, where the table was
        measured on this CPU with the installed runtime (else say why not)."""
        from eqsearch.app.search_latency import measure_front_latency
        from eqsearch.latency.fingerprint import cpu_name, runtime_version

        key = self.latency.key
        try:
            here = (cpu_name(), runtime_version(key.runtime))
        except ValueError:
            here = (cpu_name(), "")
        if here != (key.cpu, key.version):
            self.console.print(
                f"latency not measured: the table was measured with {key.runtime} "
                f"{key.version} on {key.cpu}, this is {here[1] or 'no ' + key.runtime} on "
                f"{here[0]}"
            )
            return front
        indices = front.spread(self.request.verify)
        supernet = self.loaded.need_supernet().eval()
        with self.status(f"measuring the latency of {len(indices)} configs"):
            return measure_front_latency(front, supernet, self.latency, indices)

    def annotate(self, front: ParetoFront, solver: str | None = None) -> ParetoFront:
        """``front`` with the search's title (model, solver, target, budgets) and sources."""
        request = self.request
        budgets = " ".join(
            f"{label}≤{value:g}"
            for label, value in (
                ("W", request.w_bits),
                ("A", request.a_bits),
                ("BitOPs", request.bitops),
                ("size", request.size),
                ("MACs", request.macs),
                ("latency ms", request.latency_ms),
            )
            if value is not None
        )
        if solver is None and request.is_nsga:
            solver = f"NSGA-II ({request.solver})"
        elif solver is None:
            method = front.info.get("sensitivity")
            solver = f"{request.solver} ({method})" if method else request.solver
        title = f"{self.loaded.model}: {solver}, {request.target} target {budgets}".strip()
        info = {
            **front.info,
            "title": title,
            "supernet": str(request.supernet),
            "oracle": request.oracle,
        }
        return replace(front, info=info)


def _check_strategy_memory(request: SearchRequest, problem: SearchProblem) -> None:
    """Refuse a count, budget sweep or probe count whose arrays would not fit, before any work."""
    from eqsearch.resources import check_memory, configs_memory_bytes
    from eqsearch.strategies import NEEDS_SENSITIVITIES

    if request.solver == "random":
        configs, what = request.count or 100, f"--count {request.count or 100}"
    elif request.budgets is not None:
        configs = request.budgets * len(problem.layout.forms)
        what = f"--budgets {request.budgets}"
    else:
        configs, what = 0, ""
    if configs:
        # the candidates and their genomes; the ILP's levels are floats
        needed = configs_memory_bytes(configs, problem.space.n_layers, problem.layout.n_genes)
        check_memory(needed + 8.0 * configs, what)
    if request.solver in NEEDS_SENSITIVITIES and (request.sensitivity or "hessian") == "hessian":
        # one Python float per probe, batch of scoring images and elastic layer, twice
        batches = -(-min(request.images, 1 << 20) // 64)
        samples = 2.0 * batches * request.probes * len(problem.space.elastic_indices)
        check_memory(64.0 * samples, f"--probes {request.probes} with --images {request.images}")
