"""ParetoFront: non-domination, hypervolume, tables, files, the plot."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eqsearch import costs, nsga2
from eqsearch.app.subnet_choice import load_config_argument
from eqsearch.errors import InputError
from eqsearch.pareto import ParetoFront, hypervolume, non_dominated, read_front

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


def test_write_gives_one_set_that_read_front_checks(front: ParetoFront, tmp_path) -> None:
    paths = front.write(tmp_path)
    assert [p.name for p in paths] == ["pareto.json", "pareto.csv", "pareto.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.csv", "pareto.json", "pareto.png"]
    assert read_front(tmp_path, front.space).configs == front.configs
    other = replace(front, info={**front.info, "title": "another run"})
    other.plot(tmp_path / "pareto.png")  # a PNG of another run beside this JSON
    with pytest.raises(InputError, match=r"pareto.png is not the file written with"):
        read_front(tmp_path, front.space)


def test_a_fault_while_writing_keeps_the_previous_set(
    front: ParetoFront, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front.write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = replace(front, info={**front.info, "title": "second run"})
    real_fsync = os.fsync
    calls = []

    def full_disk(descriptor: int) -> None:
        calls.append(descriptor)
        if len(calls) == 2:  # the second file's data does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        other.write(tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporaries
    assert read_front(tmp_path, front.space).info.get("title") == front.info.get("title")


def test_a_kill_between_renames_never_leaves_a_json_beside_another_runs_files(
    front: ParetoFront, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front.write(tmp_path)
    other = replace(front, info={**front.info, "title": "second run"})
    real_replace = os.replace
    renames = []

    def killed(source: str, target: str) -> None:
        renames.append(Path(target).name)
        if len(renames) == 2:  # the process dies after the CSV's rename
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        other.write(tmp_path)
    monkeypatch.undo()
    assert renames == ["pareto.csv", "pareto.png"]  # the JSON goes last
    assert not (tmp_path / "pareto.json").exists()  # the old JSON was removed first
    with pytest.raises(InputError, match="not found"):
        load_config_argument(f"{tmp_path / 'pareto.json'}#0", front.space)


def test_from_json_refuses_edited_format_version_and_space(front: ParetoFront, tmp_path) -> None:
    path = front.to_json(tmp_path / "pareto.json")
    data = json.loads(path.read_text())
    cases = {
        "format": ("eqsearch-samples", "is not an eqsearch Pareto front file"),
        "version": (99, "format version 99; this eqsearch reads"),
        "space_fingerprint": ("0123456789abcdef", "was searched on another space"),
        "configs": ("not a list", "is not a valid Pareto front file"),
    }
    for key, (value, message) in cases.items():
        path.write_text(json.dumps({**data, key: value}))
        with pytest.raises(InputError, match=message):
            ParetoFront.from_json(path, front.space)
        with pytest.raises(InputError, match=message):
            load_config_argument(f"{path}#0", front.space)
    path.write_text(json.dumps(data))
    for index in ("-1", "x", ""):
        with pytest.raises(InputError, match="must be a config index"):
            load_config_argument(f"{path}#{index}", front.space)
    with pytest.raises(InputError, match=rf"has {len(front)} configs"):
        load_config_argument(f"{path}#{len(front)}", front.space)
