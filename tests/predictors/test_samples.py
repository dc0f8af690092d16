"""Spread sampling, resumable and sharded sample files, loading errors, splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.errors import InputError
from eqsearch.files import exclusive_writer
from eqsearch.space import ElasticSpace, LayerSpec
from predictors.samples.collect import collect_samples
from predictors.samples.drawing import draw_configs
from predictors.samples.merge import merge_samples
from predictors.samples.reading import kfold_indices, load_samples, split_indices
from predictors.samples.rows import SAMPLE_COLUMNS
from predictors.samples.settings import SamplingConfig, parse_shard
from predictors.samples.sidecars import read_samples_space, shard_path
from predictors.samples.source import SampleSource
from tests.predictors.conftest import FormulaOracle


def _ten_layer_space() -> ElasticSpace:
    layers = tuple(
        LayerSpec(f"conv{i}", "conv", n_params=1000, macs=10_000, n_inputs=500, out_channels=8)
        for i in range(10)
    )
    return ElasticSpace(layers)


def test_spread_sampling_covers_the_average_bit_range() -> None:
    space = _ten_layer_space()
    spread = draw_configs(space, 2000, seed=0, strategy="spread")
    uniform = draw_configs(space, 2000, seed=0, strategy="uniform")
    edges = np.arange(2.0, 8.01, 1.0)
    for column in (costs.average_weight_bits, costs.average_activation_bits):
        counts, _ = np.histogram(column(space, spread), bins=edges)
        # each of the six one-bit bins holds about a sixth of the samples
        assert (counts > 0.12 * 2000).all(), counts
        uniform_counts, _ = np.histogram(column(space, uniform), bins=edges)
        # independent per-layer draws pile up around 5 bits
        assert uniform_counts[0] + uniform_counts[-1] < 0.02 * 2000, uniform_counts
    per_layer_distinct = (spread.w_bits != spread.w_bits[:, :1]).any(axis=1).mean()
    assert per_layer_distinct > 0.5  # still mixed precision, not uniform subnets


def test_spread_sampling_is_even_when_one_layer_holds_most_weights(space: ElasticSpace) -> None:
    # fc1 holds 95 % of the elastic weights: its bits alone would decide the average
    spread = draw_configs(space, 1200, seed=0, strategy="spread")
    for column in (costs.average_weight_bits, costs.average_activation_bits):
        counts, _ = np.histogram(column(space, spread), bins=np.arange(2.0, 8.01, 1.0))
        assert (counts > 0.12 * 1200).all() and (counts < 0.22 * 1200).all(), counts


def test_draws_are_distinct_seeded_and_prefix_stable(space: ElasticSpace) -> None:
    first = draw_configs(space, 700, seed=4)
    assert len(set(first.keys())) == 700
    assert first.keys()[:300] == draw_configs(space, 300, seed=4).keys()
    assert first.keys()[:50] != draw_configs(space, 50, seed=5).keys()
    with pytest.raises(ValueError, match=r"distinct configs"):
        draw_configs(_tiny_space(), 1000, seed=0)


def _tiny_space() -> ElasticSpace:
    layer = LayerSpec("only", "linear", n_params=10, macs=10, n_inputs=10, out_channels=1)
    return ElasticSpace((layer,), w_bits=(2, 4), a_bits=(2, 4), granularities=("channel",))


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def test_resume_after_a_torn_row_gives_exactly_n_unique_rows(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    config = SamplingConfig(n=30, seed=2)
    collect_samples(formula_oracle, space, out, SamplingConfig(n=12, seed=2))
    # what a kill -9 in the middle of a write leaves: a partial last line
    with out.open("a") as stream:
        stream.write('12,"{""choices"": [')
    run = collect_samples(formula_oracle, space, out, config)
    assert (run.rows, run.new_rows) == (30, 18)
    rows = _rows(out)
    assert len(rows) == len(set(rows)) == 30
    configs, accuracy = load_samples(out, space)
    assert len({c.to_json() for c in configs}) == 30
    np.testing.assert_allclose(accuracy, formula_oracle.evaluate(configs))
    again = collect_samples(formula_oracle, space, out, config)
    assert again.new_rows == 0 and len(_rows(out)) == 30
    assert read_samples_space(out) == space


def test_another_draw_cannot_append_to_a_file(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    collect_samples(formula_oracle, space, out, SamplingConfig(n=5, seed=0))
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"does not produce"):
        collect_samples(formula_oracle, space, out, SamplingConfig(n=5, seed=1))
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"not a samples file"):
        collect_samples(formula_oracle, space, foreign, SamplingConfig(n=5))
    assert out.read_bytes() == before and foreign.read_text() == "a,b\n1,2\n"


def test_shards_merge_into_the_unsharded_file(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    whole = tmp_path / "whole" / "samples.csv"
    collect_samples(formula_oracle, space, whole, SamplingConfig(n=25, seed=7))
    sharded = tmp_path / "sharded" / "samples.csv"
    runs = [
        collect_samples(formula_oracle, space, sharded, SamplingConfig(n=25, seed=7, shard=(i, 3)))
        for i in (2, 0, 1)
    ]
    assert [run.merged for run in runs] == [None, None, sharded]  # the last shard merges
    assert shard_path(sharded, (1, 3)).name == "samples.shard-1-of-3.csv"

    def without_seconds(path: Path) -> list[list[str]]:
        return [line.rsplit(",", 1)[:1] for line in path.read_text().splitlines()]

    assert without_seconds(sharded) == without_seconds(whole)
    assert read_samples_space(shard_path(sharded, (0, 3))) == space
    again = merge_samples([shard_path(sharded, (i, 3)) for i in range(3)], tmp_path / "m.csv")
    assert without_seconds(again) == without_seconds(whole)


def test_load_samples_names_the_bad_row(space: ElasticSpace, tmp_path: Path) -> None:
    good = space.largest().to_json().replace('"', '""')
    path = tmp_path / "bad.csv"
    path.write_text(f'config,w_bits\n"{good}",8\n')
    with pytest.raises(ValueError, match=r"bad.csv lacks the column\(s\) accuracy"):
        load_samples(path, space)
    path.write_text(f'config,accuracy\n"{good}",97.5\n"{good}",abc\n')
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): accuracy 'abc' is not a number"):
        load_samples(path, space)
    for bad in ("nan", "inf", "100.5", "-1"):
        path.write_text(f'config,accuracy\n"{good}",97.5\n"{good}",{bad}\n')
        with pytest.raises(ValueError, match=r"row 2.*not a percentage in 0\.\.100"):
            load_samples(path, space)
    path.write_text(f'config,accuracy\n"{good}",97.5\n"{good}",97.0\n')
    with pytest.raises(ValueError, match=r"row 2 \(line 3\) holds the same config as row 1"):
        load_samples(path, space)
    path.write_text('config,accuracy\n"{}",97.5\n')
    with pytest.raises(ValueError, match=r"row 1.*'choices'"):
        load_samples(path, space)
    path.write_text(f'config,accuracy\n"{good}"\n')
    with pytest.raises(ValueError, match=r"row 1.*fewer fields"):
        load_samples(path, space)
    assert list(SAMPLE_COLUMNS[:2]) == ["index", "config"]


def test_splits_and_shards() -> None:
    train, test = split_indices(100, holdout=0.2, seed=1)
    assert len(test) == 20 and len(train) == 80
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    folds = kfold_indices(10, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert parse_shard("1/4") == (1, 4)
    for text in ("4/4", "a/b", "1"):
        with pytest.raises(ValueError, match=r"i/n"):
            parse_shard(text)
    with pytest.raises(ValueError, match=r"SamplingConfig.shard must be \(i, n\)"):
        SamplingConfig(n=3, shard=(2, 2))
    with pytest.raises(ValueError, match=r"SamplingConfig.strategy must be one of spread, uniform"):
        SamplingConfig(n=3, strategy="grid")


def test_torchrun_ranks_pick_the_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    from predictors.samples.settings import shard_from_environment

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert shard_from_environment() == (2, 4)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shard_from_environment() == (0, 1)
    monkeypatch.setenv("RANK", "2")  # a rank the world size does not have
    with pytest.raises(InputError, match=r"RANK must be in 0\.\.0 for WORLD_SIZE=1; got 2"):
        shard_from_environment()
    monkeypatch.setenv("RANK", "abc")
    with pytest.raises(InputError, match=r"variable RANK must be an integer .*'abc'"):
        shard_from_environment()


def test_a_second_sampler_on_the_same_file_is_refused(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    with (
        exclusive_writer(out, what="samples file"),  # another `eqsearch sample` running
        pytest.raises(InputError, match="another process is writing samples file"),
    ):
        collect_samples(formula_oracle, space, out, SamplingConfig(n=5))
    run = collect_samples(formula_oracle, space, out, SamplingConfig(n=5))
    assert run.new_rows == 5 and len(_rows(out)) == 5


def test_resuming_refuses_rows_that_are_not_percentages(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    collect_samples(formula_oracle, space, out, SamplingConfig(n=4))
    lines = out.read_text().splitlines()
    fields = lines[2].split(",")
    fields[-2] = "nan"
    out.write_text("\n".join([*lines[:2], ",".join(fields), *lines[3:]]) + "\n")
    with pytest.raises(InputError, match=r"line 3: accuracy 'nan' is not a percentage"):
        collect_samples(formula_oracle, space, out, SamplingConfig(n=8))


def test_resuming_refuses_what_fit_predictor_refuses(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    collect_samples(formula_oracle, space, out, SamplingConfig(n=4), source=_source())
    lines = out.read_text().splitlines()
    out.write_text("\n".join([*lines, lines[2]]) + "\n")  # a row written twice
    before = out.read_bytes()
    with pytest.raises(InputError, match=r"line 6 repeats row index 1"):
        collect_samples(formula_oracle, space, out, SamplingConfig(n=8), source=_source())
    assert out.read_bytes() == before
    with pytest.raises(InputError, match="holds the same config as row 2"):
        load_samples(out, space)  # what fit-predictor says of the same file


def test_a_samples_file_without_its_sidecars_is_not_adopted(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    made = tmp_path / "made.csv"
    collect_samples(formula_oracle, space, made, SamplingConfig(n=4), source=_source())
    bare = tmp_path / "bare.csv"
    bare.write_bytes(made.read_bytes())
    with pytest.raises(InputError, match=r"has no bare\.space\.json or bare\.source\.json"):
        collect_samples(formula_oracle, space, bare, SamplingConfig(n=8), source=_source())
    (tmp_path / "bare.space.json").write_bytes((tmp_path / "made.space.json").read_bytes())
    with pytest.raises(InputError, match=r"has no bare\.source\.json beside it"):
        collect_samples(formula_oracle, space, bare, SamplingConfig(n=8), source=_source())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bare.csv",
        "bare.space.json",
        "made.csv",
        "made.source.json",
        "made.space.json",
    ]


def test_a_samples_source_is_validated(tmp_path: Path) -> None:
    from predictors.samples.sidecars import source_path
    from predictors.samples.source import read_samples_source

    for field, value, message in (
        ("bn_images", -5, "bn_images must be a positive number of images"),
        ("holdout", True, "holdout must be a positive number of images"),
        ("split", "train", "split must be one of holdout, test"),
        ("supernet_sha256", "abc", "supernet_sha256 must be 64 hex digits"),
    ):
        with pytest.raises(InputError, match=message):
            dataclasses.replace(_source(), **{field: value})
    path = tmp_path / "samples.csv"
    payload = {
        "format": "eqsearch-samples-source",
        "source": _source().to_dict(),
        "settings": {"n": -3, "seed": 0, "strategy": "spread", "forms": "global"},
    }
    source_path(path).write_text(json.dumps(payload))
    with pytest.raises(InputError, match=r"is not a samples source file \(SamplingConfig\.n"):
        read_samples_source(path)


def _source(sha: str = "a" * 64) -> SampleSource:
    return SampleSource(supernet_sha256=sha, supernet="run/supernet.pt", bn_images=100)


def test_merge_refuses_incomplete_foreign_or_mixed_shards(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    shards = [shard_path(out, (i, 3)) for i in range(3)]
    for index in (0, 1):
        collect_samples(
            formula_oracle, space, out, SamplingConfig(n=9, shard=(index, 3)), source=_source()
        )
    with pytest.raises(InputError, match=r"hold 6 of the draw's 9 rows; missing indices 2, 5, 8"):
        merge_samples(shards[:2], tmp_path / "merged.csv")
    other = tmp_path / "other" / "samples.csv"
    collect_samples(
        formula_oracle, space, other, SamplingConfig(n=9, shard=(2, 3)), source=_source("b" * 64)
    )
    with pytest.raises(InputError, match="measured on different supernets"):
        merge_samples([*shards[:2], shard_path(other, (2, 3))], tmp_path / "merged.csv")
    run = collect_samples(
        formula_oracle, space, out, SamplingConfig(n=9, shard=(2, 3)), source=_source()
    )
    assert run.merged == out
    merged = tmp_path / "elsewhere" / "merged.csv"
    assert merge_samples(shards, merged) == merged
    assert read_samples_space(merged) == space  # the merged file keeps its space file
    assert load_samples(merged, space)[1].shape == (9,)
    with pytest.raises(InputError, match="exists; pass --force"):
        merge_samples(shards, merged)
    assert merge_samples(shards, merged, force=True) == merged
    checkpoint = tmp_path / "supernet.pt"
    checkpoint.write_bytes(b"PK\x03\x04")  # not even a valid zip: still never replaced by CSV
    notes = tmp_path / "notes.csv"
    notes.write_text("my notes\n")
    with pytest.raises(InputError, match="exists; pass --force"):
        merge_samples(shards, notes)
    assert notes.read_text() == "my notes\n"


def test_a_sample_run_is_tied_to_its_supernet(
    space: ElasticSpace, formula_oracle: FormulaOracle, tmp_path: Path
) -> None:
    out = tmp_path / "samples.csv"
    collect_samples(formula_oracle, space, out, SamplingConfig(n=4), source=_source())
    before = out.read_bytes()
    with pytest.raises(InputError, match="measured on another supernet"):
        collect_samples(formula_oracle, space, out, SamplingConfig(n=8), source=_source("c" * 64))
    assert out.read_bytes() == before
    moved = dataclasses.replace(_source(), supernet="elsewhere/supernet.pt")
    assert collect_samples(formula_oracle, space, out, SamplingConfig(n=8), source=moved).rows == 8
