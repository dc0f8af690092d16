"""The strategies: ILP against brute force, the greedy curve, sensitivities, the fronts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.pareto import ParetoFront, non_dominated
from eqsearch.problem import (
    Constraint,
    SearchProblem,
    accuracy_objective,
    activation_bits_budget,
    bitops_objective,
    weight_bits_budget,
)
from eqsearch.space import QuantForm
from eqsearch.strategies import (
    STRATEGIES,
    Sensitivities,
    greedy_configs,
    greedy_path,
    ilp_configs,
    layer_costs,
    measured_sensitivities,
    min_sensitivity_choices,
    one_layer_lowered,
    random_configs,
    require_fixed_architecture,
    run_strategy,
    uniform_configs,
)
from eqsearch.strategies.additive import COSTS, index_configs, sweep_costs
from tests.eqsearch.search_fixtures import TENSORRT, AnalyticOracle, enumerable_space

SNPE = QuantForm("tensor", False, False)


def random_sensitivities(
    seed: int = 0, forms: tuple[QuantForm, ...] = (TENSORRT,)
) -> Sensitivities:
    """Arbitrary (not monotone, some negative) tables: the ILP must not rely on any shape."""
    space = enumerable_space()
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-0.2, 3.0, (len(forms), 4, len(space.w_bits)))
    activation = rng.uniform(-0.2, 2.0, (len(forms), 4, len(space.a_bits)))
    return Sensitivities.from_arrays(space, weight, activation, forms=forms)


def every_config(form: QuantForm = TENSORRT):  # type: ignore[no-untyped-def]
    """All 12⁴ configs of the enumerable space in one form."""
    space = enumerable_space()
    options = list(itertools.product(range(len(space.w_bits)), range(len(space.a_bits))))
    rows = np.asarray(list(itertools.product(range(len(options)), repeat=4)))
    pairs = np.asarray(options)[rows]
    return index_configs(space, form, pairs[..., 0], pairs[..., 1])


def cost_problem(*constraints: Constraint, forms: object = TENSORRT) -> SearchProblem:
    space = enumerable_space()
    return SearchProblem(
        space,
        [accuracy_objective(AnalyticOracle(space)), bitops_objective()],
        list(constraints),
        forms=forms,  # type: ignore[arg-type]
    )


# -- the integer program -----------------------------------------------------------------


@pytest.mark.parametrize("sweep", ["w_bits", "bitops", "size"])
def test_ilp_finds_the_brute_force_optimum_at_every_budget(sweep: str) -> None:
    sensitivities = random_sensitivities(seed={"w_bits": 11, "bitops": 12, "size": 13}[sweep])
    problem = cost_problem(activation_bits_budget(5.0))
    everything = every_config()
    space = everything.space
    total = sensitivities.config_sensitivity(everything)
    swept = np.asarray(COSTS[sweep](everything), dtype=np.float64)
    activation_ok = costs.average_activation_bits(space, everything) <= 5.0
    # levels between the configs' costs, the cheapest config's cost itself, and one below it
    levels = [*np.quantile(swept, [0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.9, 1.0]), swept.min()]
    levels.append(swept.min() * 0.99)
    for level in levels:
        feasible = activation_ok & (swept <= level)
        found = ilp_configs(problem, sensitivities, sweep=sweep, budgets=[level])
        if not feasible.any():
            assert len(found) == 0
            continue
        assert len(found) == 1
        best = total[feasible].min()
        chosen_total = float(sensitivities.config_sensitivity(found)[0])
        assert chosen_total == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert float(COSTS[sweep](found)[0]) <= level * (1 + 1e-12)
        assert costs.average_activation_bits(space, found)[0] <= 5.0
        # among the optima, the cheapest in the swept cost (the tie-break program)
        optimal = feasible & np.isclose(total, best, rtol=1e-9, atol=1e-9)
        assert float(COSTS[sweep](found)[0]) == pytest.approx(swept[optimal].min(), rel=1e-9)


def test_min_sensitivity_choices_on_plain_arrays() -> None:
    # two layers, three options each; the budget forbids the two best together
    sensitivity = np.array([[0.0, 1.0, 5.0], [0.0, 2.0, 3.0]])
    cost = np.array([[4.0, 2.0, 0.0], [4.0, 1.0, 0.0]])
    assert min_sensitivity_choices(sensitivity, [cost], [8.0]).tolist() == [0, 0]
    assert min_sensitivity_choices(sensitivity, [cost], [5.0]).tolist() == [0, 1]
    assert min_sensitivity_choices(sensitivity, [cost], [3.0]).tolist() == [1, 1]
    assert min_sensitivity_choices(sensitivity, [cost], [-1.0]) is None
    # equal sensitivities: the tie cost decides
    flat = np.zeros((2, 3))
    assert min_sensitivity_choices(flat, [cost], [8.0], tie_cost=cost).tolist() == [2, 2]
    with pytest.raises(ValueError, match="limits"):
        min_sensitivity_choices(sensitivity, [cost], [])
    with pytest.raises(ValueError, match="shape"):
        min_sensitivity_choices(sensitivity, [cost[:, :2]], [1.0])


def test_ilp_sweeps_every_allowed_form() -> None:
    sensitivities = random_sensitivities(seed=3, forms=(TENSORRT, SNPE))
    problem = cost_problem(forms=(TENSORRT, SNPE))
    found = ilp_configs(problem, sensitivities, sweep="bitops", budgets=6)
    assert len(found) == 12
    assert {str(config.uniform_form) for config in found} == {str(TENSORRT), str(SNPE)}
    with pytest.raises(ValueError, match="no sensitivities for form"):
        ilp_configs(problem, random_sensitivities(seed=3), budgets=2)


def test_a_budget_that_does_not_add_up_over_layers_is_refused() -> None:
    widest = Constraint("widest", lambda batch: batch.w_bits[:, 1:5].max(axis=1), 4.0)
    problem = cost_problem(widest)
    with pytest.raises(ValueError, match="widest is not a sum over layers"):
        ilp_configs(problem, random_sensitivities(), budgets=3)
    with pytest.raises(ValueError, match="not a sum over layers"):
        greedy_configs(problem, random_sensitivities())


def test_layer_tables_reproduce_every_cost_model() -> None:
    space = enumerable_space()
    everything = every_config(SNPE)
    w_index = np.searchsorted(space.w_bits, everything.w_bits[:, 1:5])
    a_index = np.searchsorted(space.a_bits, everything.a_bits[:, 1:5])
    for name, fn in COSTS.items():
        table = layer_costs(space, SNPE, fn, name)
        np.testing.assert_allclose(table.of(w_index, a_index), fn(everything), rtol=1e-12)


# -- greedy --------------------------------------------------------------------------------


def test_greedy_curve_is_monotone_in_the_swept_cost_and_goes_all_the_way_down() -> None:
    space = enumerable_space()
    sensitivities = random_sensitivities(seed=5)
    problem = cost_problem()
    for sweep in ("bitops", "size", "w_bits"):
        curve = greedy_configs(problem, sensitivities, sweep=sweep)
        assert (np.diff(np.asarray(COSTS[sweep](curve))) < 0).all()
        assert curve[0] == space.largest(TENSORRT)
        if sweep == "bitops":
            assert len(curve) == 1 + 4 * (len(space.w_bits) - 1 + len(space.a_bits) - 1)
            assert curve[len(curve) - 1] == space.smallest(TENSORRT)
        else:
            # lowering activations saves no weight bits or bytes: they stay at the top
            assert len(curve) == 1 + 4 * (len(space.w_bits) - 1)
            assert (curve.a_bits[:, 1:5] == space.a_bits[-1]).all()
            assert (curve.w_bits[-1, 1:5] == space.w_bits[0]).all()


def test_greedy_takes_the_least_sensitivity_per_saved_cost_first() -> None:
    space = enumerable_space()
    sweep = sweep_costs(space, TENSORRT, "w_bits")
    weight = np.zeros((4, 4))
    weight[:, :3] = [[9.0], [9.0], [9.0], [1.0]]  # lowering any weight from 8 bits costs ...
    activation = np.zeros((4, 3))
    w_path, _ = greedy_path(weight, activation, sweep)
    # ... 9 for b1..b3 and 1 for b4, which also saves the most bits (most parameters)
    assert w_path[1].tolist() == [3, 3, 3, 2]
    # equal sensitivity per saved bit: the larger saving first
    weight = np.tile(np.array([[3.0, 2.0, 1.0, 0.0]]), (4, 1))
    w_path, _ = greedy_path(weight, activation, sweep)
    params = np.asarray([layer.n_params for layer in space.layers[1:5]], dtype=float)
    first = int(np.flatnonzero(w_path[1] != w_path[0])[0])
    assert first == int(np.argmax(params))


def test_greedy_lowers_activations_while_an_activation_budget_is_exceeded() -> None:
    problem = cost_problem(activation_bits_budget(3.0))
    curve = greedy_configs(problem, random_sensitivities(seed=1), sweep="w_bits")
    a_bits = costs.average_activation_bits(problem.space, curve)
    assert (np.diff(a_bits) <= 0).all() and a_bits.min() <= 3.0
    front = run_strategy("greedy", problem, sensitivities=random_sensitivities(seed=1))
    assert (costs.average_activation_bits(problem.space, front.batch) <= 3.0).all()


# -- sensitivities -----------------------------------------------------------------------


def test_measured_sensitivities_are_the_one_layer_accuracy_drops() -> None:
    space = enumerable_space()
    oracle = AnalyticOracle(space)
    found = measured_sensitivities(oracle, space, [TENSORRT, SNPE])
    assert found.method == "measured"
    assert found.info["measurements"] == 2 * (1 + 4 * (3 + 2))
    # the analytic oracle loses s·4^(2−b) per layer: the drop from 8 bits is exact
    w_bits, a_bits = np.asarray(space.w_bits), np.asarray(space.a_bits)
    expected_w = AnalyticOracle.W_SENSITIVITY[1:5, None] * (4.0 ** (2 - w_bits) - 4.0**-6)
    expected_a = AnalyticOracle.A_SENSITIVITY[1:5, None] * (4.0 ** (2 - a_bits) - 4.0**-6)
    for form in (TENSORRT, SNPE):
        weight, activation = found.tables(form)
        np.testing.assert_allclose(weight, expected_w, atol=1e-9)
        np.testing.assert_allclose(activation, expected_a, atol=1e-9)
    assert found.info["base_accuracy"][str(SNPE)] < found.info["base_accuracy"][str(TENSORRT)]


def test_one_layer_lowered_changes_exactly_one_layer() -> None:
    space = enumerable_space()
    weights, activations = one_layer_lowered(space, SNPE)
    assert len(weights) == 4 * 3 and len(activations) == 4 * 2
    top = space.batch(space.largest(SNPE))
    changed_w = (weights.w_bits != top.w_bits).sum(axis=1)
    assert (changed_w == 1).all() and (weights.a_bits == top.a_bits).all()
    assert ((activations.a_bits != top.a_bits).sum(axis=1) == 1).all()


def test_sensitivities_round_trip_and_refuse_another_space(tmp_path: Path) -> None:
    sensitivities = random_sensitivities(seed=2, forms=(TENSORRT, SNPE))
    path = sensitivities.write(tmp_path / "s.json")
    back = Sensitivities.read(path, enumerable_space())
    np.testing.assert_array_equal(back.weight, sensitivities.weight)
    np.testing.assert_array_equal(back.activation, sensitivities.activation)
    assert back.forms == sensitivities.forms
    other = enumerable_space().__class__(
        enumerable_space().layers, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    with pytest.raises(ValueError, match="another space"):
        Sensitivities.read(path, other)
    data = json.loads(path.read_text())
    data["weight"] = data["weight"][:1]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="shape"):
        Sensitivities.read(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not an eqsearch sensitivities file"):
        Sensitivities.from_dict({"format": "x"})
    with pytest.raises(ValueError, match="finite"):
        Sensitivities.from_arrays(enumerable_space(), np.full((4, 4), np.nan), forms=TENSORRT)


def test_a_cache_is_used_only_for_the_checkpoint_and_settings_it_records(tmp_path: Path) -> None:
    from eqsearch.strategies.sensitivity import cache_path, cached_sensitivities

    space = enumerable_space()
    computed = random_sensitivities(seed=5)
    first, second = tmp_path / "a" / "supernet.pt", tmp_path / "b" / "supernet.pt"
    for checkpoint, content in ((first, b"weights of run a"), (second, b"weights of run b")):
        checkpoint.parent.mkdir()
        checkpoint.write_bytes(content)
    settings = {"images": 64, "forms": [str(TENSORRT)]}
    calls = []

    def compute() -> Sensitivities:
        calls.append(1)
        return computed

    made = cached_sensitivities(first, "given", settings, compute, space)
    again = cached_sensitivities(first, "given", settings, compute, space)
    assert (made.reused, again.reused, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(again.sensitivities.weight, computed.weight)
    recorded = json.loads(made.path.read_text())["info"]
    assert recorded["checkpoint_sha256"] != "" and recorded["settings"] == settings
    # run a's cache renamed to run b's key, and one edited to other settings: both refused
    target = cache_path(second, "given", settings)
    target.write_text(made.path.read_text())
    with pytest.raises(ValueError, match="was not computed for this checkpoint"):
        cached_sensitivities(second, "given", settings, compute, space)
    data = json.loads(made.path.read_text())
    data["info"]["settings"]["images"] = 256
    made.path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="was not computed for this checkpoint"):
        cached_sensitivities(first, "given", settings, compute, space)
    assert len(calls) == 1


def test_absurd_sensitivities_are_refused_before_a_solver_sees_them(tmp_path: Path) -> None:
    data = random_sensitivities(seed=6).to_dict()
    data["weight"][0][0][0] = 1e308
    with pytest.raises(ValueError, match="holds absurd values"):
        Sensitivities.from_dict(data)
    with pytest.raises(ValueError, match="holds absurd values"):
        Sensitivities.from_arrays(enumerable_space(), np.full((4, 4), -1e16), forms=TENSORRT)
    # the largest accepted values still solve
    big = Sensitivities.from_arrays(
        enumerable_space(), np.full((4, 4), 2.5e14) * np.arange(1, 5), forms=TENSORRT
    )
    problem = SearchProblem(
        enumerable_space(),
        [accuracy_objective(AnalyticOracle(enumerable_space())), bitops_objective()],
        forms=TENSORRT,
    )
    assert len(ilp_configs(problem, big, budgets=3)) >= 1


def test_config_sensitivity_sums_the_tables() -> None:
    sensitivities = random_sensitivities(seed=4)
    space = enumerable_space()
    weight, activation = sensitivities.tables(TENSORRT)
    config = space.uniform(3, 4, TENSORRT)
    expected = weight[:, 1].sum() + activation[:, 1].sum()
    assert sensitivities.config_sensitivity(space.batch(config))[0] == pytest.approx(expected)


def test_a_joint_space_is_refused() -> None:
    class JointSpace(type(enumerable_space())):  # type: ignore[misc]
        @property
        def is_joint(self) -> bool:
            return True

    joint = JointSpace(enumerable_space().layers, w_bits=(2, 4, 8), a_bits=(2, 4, 8))
    with pytest.raises(ValueError, match="architecture genes"):
        require_fixed_architecture(joint, "the ilp strategy")
    with pytest.raises(ValueError, match="architecture genes"):
        measured_sensitivities(AnalyticOracle(joint), joint)


# -- every strategy returns a ParetoFront ------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_returns_a_feasible_non_dominated_front(name: str) -> None:
    problem = cost_problem(weight_bits_budget(3.5))
    oracle_calls = problem.objectives[0].fn.__self__  # the AnalyticOracle
    front = run_strategy(
        name, problem, sensitivities=random_sensitivities(seed=6), budgets=8, count=40
    )
    assert isinstance(front, ParetoFront) and len(front) >= 1
    assert front.info["strategy"] == name
    assert (problem.violation(front.batch) == 0).all()
    evaluation = problem.evaluate_batch(front.batch)
    np.testing.assert_allclose(front.values, evaluation.values)
    assert non_dominated(front.minimised()).all()
    assert (np.diff(front.column("accuracy")) <= 0).all()  # best first
    # only feasible candidates were evaluated: one oracle call, as many configs as evaluated
    assert oracle_calls.calls == 2  # the front's evaluation + this test's re-evaluation
    assert front.info["evaluated"] <= front.info["candidates"]
    assert len(front.evaluated) == front.info["evaluated"]


def test_uniform_configs_are_every_bit_pair_of_every_form() -> None:
    problem = cost_problem(forms=(TENSORRT, SNPE))
    configs = uniform_configs(problem)
    assert len(configs) == 2 * 4 * 3
    assert all(config.uniform_form in (TENSORRT, SNPE) for config in configs)


def test_random_configs_are_distinct_feasible_and_seeded() -> None:
    problem = cost_problem(weight_bits_budget(3.0))
    first = random_configs(problem, 50, seed=7)
    assert len(set(first.keys())) == 50
    assert (problem.violation(first) == 0).all()
    assert random_configs(problem, 50, seed=7).keys() == first.keys()
    assert random_configs(problem, 50, seed=8).keys() != first.keys()
    with pytest.raises(ValueError, match="count"):
        random_configs(problem, 0)


def test_run_strategy_validates() -> None:
    problem = cost_problem()
    with pytest.raises(ValueError, match="strategy must be one of"):
        run_strategy("anneal", problem)
    with pytest.raises(ValueError, match="needs per-layer sensitivities"):
        run_strategy("ilp", problem)
    with pytest.raises(ValueError, match="no candidate of uniform meets"):
        run_strategy("uniform", cost_problem(weight_bits_budget(1.9)))


def test_greedy_budgets_pick_the_first_curve_config_within_each_level() -> None:
    from eqsearch.strategies.ilp import budget_levels

    problem = cost_problem(activation_bits_budget(6.0))
    sensitivities = random_sensitivities(seed=9)
    curve = greedy_configs(problem, sensitivities, sweep="bitops")
    picks = greedy_configs(problem, sensitivities, sweep="bitops", budgets=5)
    bitops = costs.bitops(problem.space, curve)
    feasible = problem.violation(curve) <= 0
    levels = budget_levels(float(bitops.min()), float(bitops.max()), 5)
    expected = sorted({int(np.flatnonzero(feasible & (bitops <= level))[0]) for level in levels})
    assert picks.keys() == curve.take(np.asarray(expected)).keys()
    assert 1 <= len(picks) <= 5 and (problem.violation(picks) == 0).all()
