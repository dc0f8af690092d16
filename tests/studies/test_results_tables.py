"""Tables over seeds: mean, spread, binomial standard error, JSON round trip."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from eqsearch.errors import InputError
from studies.report import binomial_standard_error
from studies.results.tables import (
    SeedRun,
    SeedTable,
    aggregate,
    aggregate_markdown,
    noise_scale,
    read_seed_run,
    write_seed_run,
)


def _table(a: float, b: float) -> SeedTable:
    frame = pd.DataFrame({"acc": [a, b], "size": [3.0, 4.0]}, index=["x", "y"])
    return SeedTable(frame, 1000, ("acc",))


def test_binomial_standard_error_at_98_percent_on_1000_images() -> None:
    assert binomial_standard_error(98.0, 1000) == pytest.approx(0.4427, abs=1e-4)
    assert binomial_standard_error(100.0, 1000) == 0.0


def test_aggregate_gives_mean_and_sample_standard_deviation() -> None:
    result = aggregate([_table(98.0, 90.0), _table(99.0, 92.0), _table(97.0, 91.0)])
    assert result.mean.loc["x", "acc"] == pytest.approx(98.0)
    assert result.spread.loc["x", "acc"] == pytest.approx(1.0)
    assert result.spread.loc["y", "size"] == pytest.approx(0.0)
    assert result.median_accuracy == pytest.approx(94.5)
    assert result.standard_error == pytest.approx(binomial_standard_error(94.5, 1000))
    assert noise_scale(result) == pytest.approx(1.0)


def test_one_seed_has_no_spread_and_says_so() -> None:
    result = aggregate([_table(98.0, 90.0)])
    assert math.isnan(result.spread.loc["x", "acc"])
    text = aggregate_markdown(result)
    assert "| x | 98.00 | 3.00 |" in text
    assert "One seed" in text
    assert "1000 images" in text


def test_markdown_cells_are_mean_plus_minus_spread() -> None:
    text = aggregate_markdown(aggregate([_table(98.0, 90.0), _table(99.0, 92.0)]))
    assert "| x | 98.50 ± 0.71 | 3.00 ± 0.00 |" in text
    assert "over 2 seeds" in text


def test_missing_cell_in_one_seed_counts_as_missing_there() -> None:
    other = SeedTable(pd.DataFrame({"acc": [float("nan")]}, index=["x"]), 1000, ("acc",))
    result = aggregate([_table(98.0, 90.0), other])
    assert result.mean.loc["x", "acc"] == pytest.approx(98.0)
    assert math.isnan(result.spread.loc["x", "acc"])


def test_seed_run_round_trips_through_json(tmp_path) -> None:
    run = SeedRun({"t": _table(98.0, float("nan"))}, 12.5, "abc1234", "2026-12-07")
    back = read_seed_run(write_seed_run(tmp_path / "r.json", run))
    assert back.seconds == 12.5 and back.commit == "abc1234" and back.date == "2026-12-07"
    assert back.tables["t"].frame.loc["x", "acc"] == 98.0
    assert math.isnan(back.tables["t"].frame.loc["y", "acc"])
    assert back.tables["t"].accuracy_columns == ("acc",)


def test_accuracy_columns_need_images_and_existing_columns() -> None:
    frame = pd.DataFrame({"acc": [1.0]})
    with pytest.raises(InputError, match="number of test images"):
        SeedTable(frame, None, ("acc",))
    with pytest.raises(InputError, match="names no column"):
        SeedTable(frame, 10, ("other",))
