"""Latency tables as data: prediction by layer shape × kernel class, files, the search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.engines import nsga2
from eqsearch.errors import InputError
from eqsearch.latency import KernelTable, LatencyTable, ProbeCell
from eqsearch.problem import (
    Objective,
    SearchProblem,
    bitops_objective,
    latency_budget,
    latency_objective,
    make_problem,
)
from eqsearch.space import ElasticSpace, QuantForm

from .joint_fixtures import joint_space
from .latency_fixtures import KEY
from .latency_fixtures import latency_table as _table


def test_prediction_sums_layer_times_by_shape_and_class(space: ElasticSpace) -> None:
    table = _table(space)
    configs = [space.uniform(8, 8), space.uniform(4, 8), space.uniform(4, 4)]
    predicted = table.predict(space.batch(configs))
    macs = np.array([layer.macs for layer in space.layers], dtype=np.float64) / 1e6
    pinned = np.array([layer.pinned is not None for layer in space.layers])
    full = 0.25 + 2.0 * macs.sum()
    narrow = 0.25 + 2.0 * (macs[pinned].sum() + 1.5 * macs[~pinned].sum())
    np.testing.assert_allclose(predicted, [full, full, narrow])


def test_joint_space_prediction_follows_each_configs_architecture() -> None:
    space = joint_space()
    table = _table(space, clip_ratio=1.0)
    batch = space.sample(1, 50)
    expected = 0.25 + 2.0 * np.asarray(costs.macs(space, batch)) / 1e6
    np.testing.assert_allclose(table.predict(batch), expected)


def test_a_table_survives_its_file(space: ElasticSpace, tmp_path) -> None:
    table = _table(space)
    path = table.save(tmp_path / "latency.json")
    again = LatencyTable.load(path)
    batch = space.sample(3, 20)
    np.testing.assert_allclose(again.predict(batch), table.predict(batch), rtol=1e-6)
    assert again.key == KEY and again.classes == table.classes


def test_a_table_of_another_space_or_shape_is_refused(space: ElasticSpace, tmp_path) -> None:
    table = _table(space)
    other = ElasticSpace(space.layers, w_bits=(2, 4), a_bits=(4, 8))
    with pytest.raises(InputError, match="measured for another space"):
        table.check_space(other)
    with pytest.raises(InputError, match="measured for another space"):
        make_problem(other, objectives=("latency",), latency=table)
    path = tmp_path / "bad.json"
    data = table.to_dict()
    data["units"][0]["shapes"] = [[1, 2, 3]]
    path.write_text(json.dumps(data))
    broken = LatencyTable.load(path)
    with pytest.raises(InputError, match="no measurement of layer 'conv1'"):
        broken.predict(space.batch([space.uniform(8, 8)]))
    path.write_text(json.dumps({"format": "eqsearch-latency", "version": 1}))
    with pytest.raises(InputError, match="is damaged"):
        LatencyTable.load(path)


def test_a_latency_budget_no_config_meets_is_refused_by_name(space: ElasticSpace) -> None:
    table = _table(space)
    # refused where the problem is made, before any work
    with pytest.raises(InputError, match=r"found by sampling .* none met latency_budget"):
        make_problem(space, objectives=("bitops",), latency=table, latency_ms=0.001)
    problem = SearchProblem(space, [bitops_objective()], [latency_budget(table, 0.001)])
    (budget,) = problem.constraints
    # a runtime's latency may fall as bits rise (int8 kernels beside float int4): not repaired
    assert budget.name == "latency_budget" and not budget.monotone
    with pytest.raises(InputError, match=r"found by sampling .* none met latency_budget"):
        nsga2(problem, population=8, generations=1, seed=0)
    with pytest.raises(InputError, match="needs a measured latency table"):
        make_problem(space, objectives=("latency",))


@pytest.mark.parametrize("engine", ["pymoo", "deap"])
def test_a_measured_latency_objective_drives_both_engines(space: ElasticSpace, engine: str) -> None:
    table = _table(space)
    accuracy = Objective("accuracy", lambda b: b.w_bits.sum(axis=1) + b.a_bits.sum(axis=1), "max")
    limit = float(table.predict(space.batch([space.uniform(6, 6)]))[0])
    problem = SearchProblem(
        space,
        [accuracy, latency_objective(table)],
        [latency_budget(table, limit)],
        forms=QuantForm(),
    )
    front = nsga2(problem, engine=engine, population=20, generations=10, seed=0)
    predicted = table.predict(front.batch)
    np.testing.assert_allclose(front.column("latency"), predicted)
    assert np.all(predicted <= limit + 1e-9)
    # in this table 8-bit activations are fastest (no clip) and the most accurate: the
    # front's fastest config is one with every searched layer at A8
    fastest = front.batch.take([int(np.argmin(front.column("latency")))])
    assert np.all(fastest.a_bits == 8)
    assert front.column("latency").min() == pytest.approx(
        float(table.predict(space.batch([space.uniform(2, 8)]))[0])
    )


def _cell(role: str, form: str, w: int, a: int, storage: str, integer: bool) -> ProbeCell:
    return ProbeCell(role, form, w, a, storage, "K", integer, 1.0, 2.0)


def test_a_probe_tells_which_forms_run_integer_kernels() -> None:
    cells = [
        _cell(role, form, w, a, "int8", integer=form.split("-")[1] == "sym")
        for role in ("dense", "depthwise")
        for form in ("channel-sym-sym", "channel-asym-sym")
        for w, a in ((4, 8), (8, 4), (8, 8))
    ]
    cells.append(_cell("dense", "channel-sym-sym", 4, 8, "int4", False))
    probe = KernelTable(KEY, tuple(cells))
    assert probe.integer_forms() == (QuantForm.parse("channel-sym-sym"),)
    assert probe.integer("dense", "channel-sym-sym", 4, 4) is True  # both operands measured
    assert probe.integer("dense", "channel-asym-sym", 4, 4) is False
    assert probe.integer("dense", "channel-sym-sym", 2, 8) is None
    assert probe.class_label("dense", "channel-sym-sym", 4, 4) == "channel-sym-sym/int/clip"
    assert probe.class_label("dense", "channel-asym-sym", 8, 8) == "channel-asym-sym/float/full"
    assert probe.class_label("dense", "channel-sym-sym", 32, 32) == "fp32"
    assert not probe.int4_integer("dense")
    assert KernelTable.from_dict(probe.to_dict()) == probe


@pytest.mark.parametrize("name", ["ilp", "greedy", "uniform"])
def test_strategies_sweep_and_budget_a_latency_table(name: str) -> None:
    """A latency table is a sum over layers: the ILP and greedy sweep it like BitOPs, and
    every strategy keeps its budget."""
    from eqsearch.strategies import run_strategy

    from .search_fixtures import TENSORRT, AnalyticOracle, enumerable_space
    from .test_strategies import random_sensitivities

    space = enumerable_space()
    table = _table(space, clip_ratio=1.3)
    limit = float(table.predict(space.batch([space.uniform(8, 4, TENSORRT)]))[0])
    problem = make_problem(
        space,
        AnalyticOracle(space),
        objectives=("accuracy", "latency"),
        latency=table,
        latency_ms=limit,
        target="tensorrt",
    )
    front = run_strategy(name, problem, sensitivities=random_sensitivities(), budgets=5)
    predicted = table.predict(front.batch)
    np.testing.assert_allclose(front.column("latency"), predicted)
    assert len(front) >= 1 and np.all(predicted <= limit + 1e-9)
    if name != "uniform":
        assert front.info["sweep"] == "latency"


def test_a_probe_covers_only_the_widths_and_forms_it_measured() -> None:
    cells = tuple(
        _cell("dense", "channel-sym-sym", w, a, "int8", True) for w, a in ((4, 8), (8, 4), (8, 8))
    )
    probe = KernelTable(KEY, cells)
    sym = QuantForm.parse("channel-sym-sym")
    assert probe.covers((4, 8), (4, 8), (sym,))
    assert not probe.covers((2, 4, 8), (4, 8), (sym,))
    assert not probe.covers((4, 8), (4, 8), (sym, QuantForm.parse("tensor-sym-sym")))
