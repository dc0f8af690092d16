"""ParetoFront: non-domination, hypervolume, tables, files, the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqsearch import costs, nsga2
from eqsearch.commands.common import load_config_argument
from eqsearch.pareto import ParetoFront, hypervolume, non_dominated

from .search_fixtures import problem_under_budget


def test_non_dominated_keeps_ties_and_drops_dominated() -> None:
    points = np.array([[1, 5], [2, 3], [2, 3], [3, 3], [4, 1], [5, 5], [1, 6]], dtype=float)
    np.testing.assert_array_equal(
        non_dominated(points), [True, True, True, False, True, False, False]
    )
    three = np.array([[1, 2, 3], [2, 1, 3], [2, 2, 3], [1, 1, 4]], dtype=float)
    np.testing.assert_array_equal(non_dominated(three), [True, True, False, True])


def test_hypervolume_exact_values() -> None:
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == 6.0
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4]) == 6.0
    assert hypervolume([[1, 1, 1]], [2, 3, 4]) == 6.0
    assert hypervolume([[1, 2, 2], [2, 1, 2]], [3, 3, 3]) == pytest.approx(3.0)
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0


@pytest.fixture(scope="module")
def front() -> ParetoFront:
    return nsga2(problem_under_budget(), population=20, generations=10, seed=0)


def test_front_table_and_order(front: ParetoFront) -> None:
    frame = front.to_frame()
    assert list(frame.columns) == [
        "accuracy", "bitops", "w_bits", "a_bits", "w_comp", "a_comp", "size_bytes", "form",
    ]  # fmt: skip
    assert (np.diff(frame["accuracy"]) < 0).all() and (np.diff(frame["bitops"]) < 0).all()
    np.testing.assert_allclose(frame["w_bits"], costs.average_weight_bits(front.space, front.batch))
    assert set(frame["form"]) == {"channel-sym-sym"}
    middle = round((len(front) - 1) / 2)
    assert front.spread(3) == [0, middle, len(front) - 1]
    assert front.spread(1000) == list(range(len(front)))


def test_hypervolume_in_the_objectives_units(front: ParetoFront) -> None:
    accuracy, bitops = front.column("accuracy"), front.column("bitops")
    expected = hypervolume(np.c_[-accuracy, bitops], [-50.0, 1e8])
    assert front.hypervolume((50.0, 1e8)) == expected > 0


def test_json_round_trip_and_eval_reads_entries(front: ParetoFront, tmp_path) -> None:
    verified = front.with_measured([0, 2], [91.0, 88.5])
    path = verified.to_json(tmp_path / "pareto.json")
    data = json.loads(path.read_text())
    assert data["format"] == "eqsearch-pareto" and len(data["configs"]) == len(front)
    entry = data["configs"][2]
    assert entry["measured_accuracy"] == 88.5
    assert "measured_accuracy" not in data["configs"][1]
    assert entry["accuracy"] == pytest.approx(front.column("accuracy")[2])
    assert data["info"]["engine"] == "pymoo" and data["info"]["constraints"] == {"w_bits": 3.5}
    assert load_config_argument(f"{path}#2", front.space) == front.configs[2]
    again = ParetoFront.from_json(path, front.space)
    assert again.configs == front.configs
    np.testing.assert_allclose(again.values, front.values)
    assert again.measured is not None and again.measured[0] == 91.0
    assert np.isnan(again.measured[1])


def test_csv_and_plot(front: ParetoFront, tmp_path) -> None:
    csv = front.to_csv(tmp_path / "pareto.csv").read_text().splitlines()
    assert csv[0].startswith("index,accuracy,bitops,w_bits")
    assert len(csv) == len(front) + 1
    png = front.plot(tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.csv", "pareto.png"]
    assert set(front.reference) == {"W2A2", "W4A4", "W8A8"}
