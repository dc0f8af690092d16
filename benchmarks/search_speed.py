"""NSGA-II speed at the paper's GA setting: population 100 x 500 generations on the resnet18 space.

Times, on one MLP accuracy predictor and one budget (average weight bits <= 3):

- ``nsga2(engine="pymoo")`` and ``nsga2(engine="deap")`` (and, inside the pymoo run, the
  problem's own work: decoding genomes, the predictor, the cost models);
- pymoo's stock ``NSGA2`` through ``minimize`` on the same problem (reference);
- a plain-Python GA in the style of OFA's evolution finder: configs as Python lists, each
  candidate's budget checked one by one with rejection sampling, one predictor call per
  generation (single-objective: accuracy under the budget).

Every figure is the median over ``--repeats`` runs. Usage::

    python benchmarks/search_speed.py [--repeats 3] [--generations 500] [--skip-stock]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
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


def load_space(rebuild: bool) -> ElasticSpace:
    """The resnet18 space (224x224, 1000 classes), measured once by the supernet and cached."""
    if rebuild or not SPACE_FILE.exists():
        from supernet.elastic import build_supernet

        space = build_supernet("resnet18", num_classes=1000, image_size=224).space
        SPACE_FILE.write_text(json.dumps(space.to_dict(), indent=1) + "\n")
    return ElasticSpace.from_dict(json.loads(SPACE_FILE.read_text()))


def fit_predictor(space: ElasticSpace, seed: int = 0) -> Any:
    """A 7-layer MLP (6 hidden layers of 128) on the conditional encoding, fitted briefly to a
    synthetic accuracy of 500 random configs: its inference cost is what matters here."""
    from predictors import PredictorOracle, build_predictor

    batch = space.sample(seed, 500)
    noise = (8 - batch.w_bits).mean(axis=1) ** 1.5 * 5 + (8 - batch.a_bits).mean(axis=1) * 3
    accuracy = 70.0 - noise - 0.5 * (~batch.per_channel).mean(axis=1)
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


def median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time over ``repeats`` runs, and the last run's result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--skip-stock", action="store_true", help="skip pymoo's stock NSGA2")
    parser.add_argument("--skip-ofa", action="store_true", help="skip the OFA-style baseline")
    parser.add_argument("--rebuild-space", action="store_true", help="re-measure resnet18")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    space = load_space(args.rebuild_space)
    oracle = fit_predictor(space)
    problem = timed_problem(space, oracle)
    settings = {"population": args.population, "generations": args.generations}
    print(f"resnet18 space: {space.describe()}")
    print(
        f"population {args.population} x {args.generations} generations, W <= {W_BITS} bits, "
        f"objectives accuracy (7-layer MLP predictor) + BitOPs; median of {args.repeats} runs"
    )
    rows: list[tuple[str, float, str]] = []
    for engine in ("pymoo", "deap"):
        TimedProblem.seconds = 0.0
        seconds, front = median_seconds(
            lambda engine=engine: nsga2(problem, engine=engine, seed=0, **settings), args.repeats
        )
        own = TimedProblem.seconds / args.repeats
        budget_met = bool((costs.average_weight_bits(space, front.batch) <= W_BITS).all())
        detail = (
            f"front {len(front)} configs, HV {front.hypervolume((0.0, 1e11)):.4g}, "
            f"budget met: {budget_met}; problem work {own:.2f} s"
        )
        rows.append((f"nsga2(engine={engine!r})", seconds, detail))
        print(f"nsga2(engine={engine!r}): {seconds:.2f} s ({detail})", flush=True)
    if not args.skip_stock:
        seconds, size = median_seconds(
            lambda: stock_pymoo(problem, args.population, args.generations, 0), args.repeats
        )
        rows.append(("pymoo stock NSGA2 + minimize", seconds, f"front {size} configs"))
        print(f"pymoo stock NSGA2 + minimize: {seconds:.2f} s", flush=True)
    if not args.skip_ofa:
        seconds, best = median_seconds(
            lambda: ofa_style_ga(space, oracle, seed=0, **settings), args.repeats
        )
        rows.append(("OFA-style plain-Python GA", seconds, f"best accuracy {best:.2f}"))
    print("summary (ratio = time / pymoo engine time):")
    reference = rows[0][1]
    width = max(len(name) for name, _, _ in rows)
    for name, seconds, detail in rows:
        print(f"{name:<{width}}  {seconds:6.2f} s  {seconds / reference:5.2f}x pymoo  {detail}")


if __name__ == "__main__":
    main()
