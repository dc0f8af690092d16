"""NSGA-II speed at the paper's GA setting: population 100 x 500 generations.

Spaces (``--spaces``): ``resnet18`` (224x224, 19 searched layers, measured once by the
supernet and cached in ``resnet18_space.json``); ``oqa_mbv3``, the joint architecture x bits
space of OQA's MobileNetV3 (``eqsearch.space.mobilenet``: 5 stages, depth 2-4, expand 3/4/6,
kernel 3/5/7, per-layer bits 2-8; first conv, SE convs and classifier in full precision as OQA
leaves them: 64 searched layers, 174 genes); ``mbv3_all``, the same with the SE convs searched
too and the first/last layers pinned to 8/8 (88 searched layers, 222 genes). Times, on one MLP
accuracy predictor and one budget (average weight bits <= 3):

- ``nsga2(engine="pymoo")`` and ``nsga2(engine="deap")`` (and, inside the pymoo run, the
  problem's own work: decoding genomes, the predictor, the cost models);
- on resnet18, pymoo's stock ``NSGA2`` through ``minimize`` on the same problem (reference);
- on resnet18, a plain-Python GA in the style of OFA's evolution finder: configs as Python
  lists, each candidate's budget checked one by one with rejection sampling, one predictor
  call per generation (single-objective: accuracy under the budget).

``--baseline DIR`` also times both engines on resnet18 with the eqsearch of another checkout
(e.g. a worktree of main), alternating fresh processes of this code and of that one round by round,
and prints the ratio of the medians: on a shared machine a figure measured at another time
says little. Every figure is the median over ``--repeats`` runs. Usage::

    python benchmarks/search_speed.py [--repeats 3] [--generations 500] [--skip-stock]
        [--spaces resnet18,oqa_mbv3] [--baseline ../main --rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eqsearch import costs
from eqsearch.engines import nsga2
from eqsearch.problem import Evaluation, SearchProblem, make_problem
from eqsearch.space import ElasticSpace, LayerChoice, SubnetConfig

SPACE_FILE = Path(__file__).with_name("resnet18_space.json")
W_BITS = 3.0


def load_space(rebuild: bool, name: str = "resnet18") -> ElasticSpace:
    """The resnet18 space (224x224, 1000 classes), measured once by the supernet and cached;
    or the OQA MobileNetV3 joint space, declared by ``eqsearch.space.mobilenet``."""
    if name in ("oqa_mbv3", "mbv3_all"):
        from eqsearch.space.mobilenet import mobilenet_v3_space

        if name == "mbv3_all":
            return mobilenet_v3_space()
        # OQA's quantization: first conv, SE convs and classifier left in full precision
        return mobilenet_v3_space(first_last=(32, 32), se_pinned=(32, 32))
    if rebuild or not SPACE_FILE.exists():
        from supernet.networks.build import build_supernet

        space = build_supernet("resnet18", num_classes=1000, image_size=224).space
        SPACE_FILE.write_text(json.dumps(space.to_dict(), indent=1) + "\n")
    return ElasticSpace.from_dict(json.loads(SPACE_FILE.read_text()))


def fit_predictor(space: ElasticSpace, seed: int = 0) -> Any:
    """A 7-layer MLP (6 hidden layers of 128) on the conditional encoding, fitted briefly to a
    synthetic accuracy of 500 random configs: its inference cost is what matters here."""
    from predictors import PredictorOracle, build_predictor

    batch = space.sample(seed, 500)
    w_bits, a_bits = batch.w_bits, batch.a_bits
    joint = bool(getattr(space, "genes", ()))  # (--baseline runs this on older checkouts)
    if joint:  # layers the search does not choose (pinned, or not running) count as 8-bit
        searched = batch.active & (space.layer_arrays["elastic"] > 0)
        w_bits, a_bits = (np.where(searched, bits, 8) for bits in (w_bits, a_bits))
    noise = (8 - w_bits).mean(axis=1) ** 1.5 * 5 + (8 - a_bits).mean(axis=1) * 3
    accuracy = 70.0 - noise - 0.5 * (~batch.per_channel).mean(axis=1)
    if joint:  # a larger architecture is more accurate
        accuracy += 3.0 * np.log(batch.params.sum(axis=1) / batch.params.sum(axis=1).min())
    predictor = build_predictor("mlp", space, seed=seed, hidden_layers=6, width=128, epochs=5)
    return PredictorOracle(predictor.fit(batch, accuracy))


class TimedProblem(SearchProblem):
    """A SearchProblem that adds up the time spent evaluating populations."""

    seconds: float = 0.0

    def evaluate(self, genomes: Any) -> Evaluation:
        start = time.perf_counter()
        try:
            return super().evaluate(genomes)
        finally:
            TimedProblem.seconds += time.perf_counter() - start


def timed_problem(space: ElasticSpace, oracle: Any) -> TimedProblem:
    base = make_problem(space, oracle, objectives=("accuracy", "bitops"), w_bits=W_BITS)
    return TimedProblem(base.space, base.objectives, base.constraints, base.forms)


def stock_pymoo(problem: SearchProblem, population: int, generations: int, seed: int) -> int:
    """pymoo's NSGA2 through ``minimize`` with integer operators; returns the front size."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize

    layout = problem.layout

    class Wrapped(Problem):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(
                n_var=layout.n_genes,
                n_obj=len(problem.objectives),
                n_ieq_constr=len(problem.constraints),
                xl=layout.lower,
                xu=layout.upper,
                vtype=int,
            )

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kw: Any) -> None:
            evaluation = problem.evaluate(np.rint(x).astype(np.int64))
            out["F"] = evaluation.minimised
            out["G"] = np.stack(
                [c.values(evaluation.batch) - c.limit for c in problem.constraints], axis=1
            )

    algorithm = NSGA2(
        pop_size=population,
        sampling=problem.initial_population(np.random.default_rng(seed), population),
        crossover=SBX(eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    result = minimize(Wrapped(), algorithm, ("n_gen", generations + 1), seed=seed, verbose=False)
    return 0 if result.F is None else len(result.F)


def ofa_style_ga(
    space: ElasticSpace,
    oracle: Any,
    *,
    population: int,
    generations: int,
    seed: int,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
) -> float:
    """OFA's evolution finder, re-stated: the best accuracy found under the weight budget.

    Candidates are Python lists of per-layer choices; every new candidate (random, mutant or
    crossover child) is redrawn until its average weight bits meet the budget, checked one
    candidate at a time; the predictor scores each generation's new candidates in one call.
    """
    rng = random.Random(seed)
    elastic = list(space.elastic_indices)
    params = [space.layers[i].n_params for i in elastic]
    total = float(sum(params))
    forms = list(space.forms)

    def meets_budget(w_bits: Sequence[int]) -> bool:
        return sum(p * b for p, b in zip(params, w_bits, strict=True)) / total <= W_BITS

    def random_candidate() -> tuple[list[int], list[int], int]:
        while True:
            w = [rng.choice(space.w_bits) for _ in elastic]
            if meets_budget(w):
                return w, [rng.choice(space.a_bits) for _ in elastic], rng.randrange(len(forms))

    def mutate(parent: tuple[list[int], list[int], int]) -> tuple[list[int], list[int], int]:
        while True:
            w = [rng.choice(space.w_bits) if rng.random() < mutate_prob else b for b in parent[0]]
            a = [rng.choice(space.a_bits) if rng.random() < mutate_prob else b for b in parent[1]]
            form = rng.randrange(len(forms)) if rng.random() < mutate_prob else parent[2]
            if meets_budget(w):
                return w, a, form

    def crossover(
        one: tuple[list[int], list[int], int], two: tuple[list[int], list[int], int]
    ) -> tuple[list[int], list[int], int]:
        while True:
            w = [rng.choice(pair) for pair in zip(one[0], two[0], strict=True)]
            a = [rng.choice(pair) for pair in zip(one[1], two[1], strict=True)]
            if meets_budget(w):
                return w, a, rng.choice((one[2], two[2]))

    def configs(candidates: list[tuple[list[int], list[int], int]]) -> list[SubnetConfig]:
        result = []
        for w, a, form_index in candidates:
            choices = []
            bits = iter(zip(w, a, strict=True))
            for layer in space.layers:
                pair = layer.pinned or next(bits)
                choices.append(LayerChoice(pair[0], pair[1], forms[form_index]))
            result.append(SubnetConfig(tuple(choices)))
        return result

    candidates = [random_candidate() for _ in range(population)]
    scores = list(oracle.evaluate(configs(candidates)))
    n_parents = int(population * parent_ratio)
    n_mutants = int(population * mutation_ratio)
    for _ in range(generations):
        ranked = sorted(zip(scores, range(len(candidates)), strict=True), reverse=True)
        parents = [candidates[i] for _, i in ranked[:n_parents]]
        parent_scores = [s for s, _ in ranked[:n_parents]]
        children = [mutate(rng.choice(parents)) for _ in range(n_mutants)]
        children += [
            crossover(rng.choice(parents), rng.choice(parents))
            for _ in range(population - n_parents - n_mutants)
        ]
        candidates = parents + children
        scores = parent_scores + list(oracle.evaluate(configs(children)))
    return max(scores)


CPU_SECONDS: list[float] = []
"""CPU seconds of the runs of the last ``median_seconds`` call (this process's own work: on a
shared machine the wall time also counts waiting for a core)."""


CPU_MEDIANS: dict[str, float] = {}
"""Median CPU seconds of each timed engine run, by row name."""


def median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time over ``repeats`` runs, and the last run's result."""
    times = []
    CPU_SECONDS.clear()
    result = None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - start)
        CPU_SECONDS.append(time.process_time() - cpu)
    return statistics.median(times), result


def time_engines(
    space_name: str, repeats: int, settings: dict[str, int], *, rebuild: bool = False
) -> tuple[ElasticSpace, Any, TimedProblem, list[tuple[str, float, str]]]:
    """Median seconds of both engines on one space, with details per engine."""
    space = load_space(rebuild, space_name)
    oracle = fit_predictor(space)
    problem = timed_problem(space, oracle)
    rows: list[tuple[str, float, str]] = []
    for engine in ("pymoo", "deap"):
        TimedProblem.seconds = 0.0
        seconds, front = median_seconds(
            lambda engine=engine: nsga2(problem, engine=engine, seed=0, **settings), repeats
        )
        CPU_MEDIANS[f"{space_name} nsga2(engine={engine!r})"] = statistics.median(CPU_SECONDS)
        own = TimedProblem.seconds / repeats
        budget_met = bool((costs.average_weight_bits(space, front.batch) <= W_BITS).all())
        detail = (
            f"CPU {statistics.median(CPU_SECONDS):.2f} s; front {len(front)} configs, HV "
            f"{front.hypervolume((0.0, 1e11)):.4g}, budget met: {budget_met}; problem work "
            f"{own:.2f} s"
        )
        rows.append((f"{space_name} nsga2(engine={engine!r})", seconds, detail))
        print(f"{space_name} nsga2(engine={engine!r}): {seconds:.2f} s ({detail})", flush=True)
    return space, oracle, problem, rows


def worker(space_name: str, repeats: int, settings: dict[str, int]) -> None:
    """Print the median seconds of both engines as JSON (one process of ``--baseline``)."""
    import torch

    torch.set_num_threads(1)
    _, _, _, rows = time_engines(space_name, repeats, settings)
    print(json.dumps({name: [seconds, CPU_MEDIANS[name]] for name, seconds, _ in rows}))


def compare_with_baseline(
    baseline: Path, rounds: int, repeats: int, settings: dict[str, int]
) -> None:
    """Alternate processes of this checkout and of ``baseline`` on resnet18; print ratios."""
    here = Path(__file__).resolve().parents[1]
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--repeats",
        str(repeats),
        "--population",
        str(settings["population"]),
        "--generations",
        str(settings["generations"]),
    ]
    times: dict[str, dict[str, list[float]]] = {"this": {}, "baseline": {}}
    for _ in range(rounds):
        for label, root in (("this", here), ("baseline", baseline)):
            environment = dict(os.environ, PYTHONPATH=str(root))
            output = subprocess.run(
                command, env=environment, capture_output=True, text=True, check=True
            ).stdout
            for name, (seconds, cpu) in json.loads(output.strip().splitlines()[-1]).items():
                times[label].setdefault(name, []).append(seconds)
                times[label].setdefault(f"{name}, CPU", []).append(cpu)
    print(
        f"resnet18, this checkout vs {baseline} ({rounds} alternating rounds of fresh processes):"
    )
    for name in times["this"]:
        mine = statistics.median(times["this"][name])
        theirs = statistics.median(times["baseline"][name])
        print(
            f"{name}: this {mine:.2f} s, baseline {theirs:.2f} s, ratio {mine / theirs:.2f}x "
            f"(this {', '.join(f'{s:.2f}' for s in times['this'][name])}; baseline "
            f"{', '.join(f'{s:.2f}' for s in times['baseline'][name])})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--spaces", default="resnet18", help="resnet18, oqa_mbv3, mbv3_all")
    parser.add_argument("--skip-stock", action="store_true", help="skip pymoo's stock NSGA2")
    parser.add_argument("--skip-ofa", action="store_true", help="skip the OFA-style baseline")
    parser.add_argument("--rebuild-space", action="store_true", help="re-measure resnet18")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare resnet18 with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of --baseline")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = {"population": args.population, "generations": args.generations}
    if args.worker:
        worker("resnet18", args.repeats, settings)
        return

    import torch

    torch.set_num_threads(1)
    rows: list[tuple[str, float, str]] = []
    for space_name in args.spaces.split(","):
        space = load_space(args.rebuild_space, space_name)
        print(f"{space_name} space: {space.describe()}")
        print(
            f"population {args.population} x {args.generations} generations, W <= {W_BITS} "
            f"bits, objectives accuracy (7-layer MLP predictor) + BitOPs; median of "
            f"{args.repeats} runs"
        )
        space, oracle, problem, engine_rows = time_engines(
            space_name, args.repeats, settings, rebuild=args.rebuild_space
        )
        rows += engine_rows
        if space_name != "resnet18":
            continue
        if not args.skip_stock:
            seconds, size = median_seconds(
                lambda problem=problem: stock_pymoo(problem, args.population, args.generations, 0),
                args.repeats,
            )
            rows.append(("pymoo stock NSGA2 + minimize", seconds, f"front {size} configs"))
            print(f"pymoo stock NSGA2 + minimize: {seconds:.2f} s", flush=True)
        if not args.skip_ofa:
            seconds, best = median_seconds(
                lambda space=space, oracle=oracle: ofa_style_ga(space, oracle, seed=0, **settings),
                args.repeats,
            )
            rows.append(("OFA-style plain-Python GA", seconds, f"best accuracy {best:.2f}"))
    print("summary (ratio = time / first pymoo engine time):")
    reference = rows[0][1]
    width = max(len(name) for name, _, _ in rows)
    for name, seconds, detail in rows:
        print(f"{name:<{width}}  {seconds:6.2f} s  {seconds / reference:5.2f}x pymoo  {detail}")
    if args.baseline is not None:
        compare_with_baseline(args.baseline, args.rounds, args.repeats, settings)


if __name__ == "__main__":
    main()
