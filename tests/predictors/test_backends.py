"""The registry contract: every backend fits, predicts, saves, loads and guards its space."""

from __future__ import annotations

import datetime
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from eqsearch.space import ElasticSpace
from predictors import (
    PREDICTORS,
    Predictor,
    PredictorOracle,
    build_predictor,
    find_predictor,
    load_predictor,
    predictor_filename,
)
from predictors.samples.drawing import draw_configs
from tests.conftest import make_space
from tests.predictors.conftest import FormulaOracle

FAST_OPTIONS = {
    "mlp": {"epochs": 60, "width": 32, "patience": 20},
    "xgboost": {"n_estimators": 60},
    "ridge": {},
}


@pytest.fixture(scope="module")
def samples() -> tuple[ElasticSpace, object, np.ndarray]:
    space = make_space()
    batch = draw_configs(space, 240, seed=1)
    return space, batch, FormulaOracle(space).evaluate(batch)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_fit_predict_save_load_round_trip(name: str, samples, tmp_path: Path) -> None:
    space, batch, accuracy = samples
    predictor = build_predictor(name, space, seed=3, **FAST_OPTIONS[name])
    assert isinstance(predictor, Predictor) and predictor.name == name
    assert predictor.fit(batch[:200], accuracy[:200]) is predictor
    predicted = predictor.predict(batch[200:])
    assert predicted.dtype == np.float64 and predicted.shape == (40,)
    # the formula is additive in the encoded bits: every backend ranks it well
    assert np.corrcoef(predicted, accuracy[200:])[0, 1] > 0.8
    path = predictor.save(tmp_path / predictor_filename(name))
    loaded = load_predictor(path)
    assert type(loaded) is type(predictor) and loaded.space == space
    np.testing.assert_allclose(loaded.predict(batch[200:]), predicted, rtol=0, atol=1e-9)
    assert loaded.predict(list(batch[200:205])).tolist() == pytest.approx(predicted[:5].tolist())
    # same seed, same fit
    again = build_predictor(name, space, seed=3, **FAST_OPTIONS[name]).fit(
        batch[:200], accuracy[:200]
    )
    np.testing.assert_allclose(again.predict(batch[200:]), predicted, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_configs_of_another_space_are_refused(name: str, samples) -> None:
    space, batch, accuracy = samples
    predictor = build_predictor(name, space, **FAST_OPTIONS[name]).fit(batch[:50], accuracy[:50])
    other = make_space(w_bits=(2, 4, 8), a_bits=(2, 4, 8))
    with pytest.raises(ValueError, match=r"another space"):
        predictor.predict(other.sample(0, 3))
    with pytest.raises(ValueError, match=r"layer"):
        predictor.predict([ElasticSpace(other.layers[:3]).largest()])


def test_unfitted_and_bad_options_are_errors(space: ElasticSpace) -> None:
    with pytest.raises(ValueError, match=r"not fitted"):
        build_predictor("mlp", space).predict([space.largest()])
    with pytest.raises(ValueError, match=r"unknown predictor backend 'svm'; registered: mlp"):
        build_predictor("svm", space)
    with pytest.raises(ValueError, match=r"unknown option.*depth.*allowed: objective"):
        build_predictor("xgboost", space, depth=3)
    with pytest.raises(ValueError, match=r"XGBoostOptions.objective must be one of"):
        build_predictor("xgboost", space, objective="poisson")
    with pytest.raises(ValueError, match=r"MLPOptions.width must be a positive integer"):
        build_predictor("mlp", space, width=0)


def test_xgboost_ranking_objective_predicts_accuracy_scale(samples) -> None:
    space, batch, accuracy = samples
    predictor = build_predictor("xgboost", space, objective="ranking", n_estimators=80)
    predicted = predictor.fit(batch[:200], accuracy[:200]).predict(batch[200:])
    assert np.corrcoef(predicted, accuracy[200:])[0, 1] > 0.8
    assert abs(predicted.mean() - accuracy[200:].mean()) < 1.0  # mapped back to percent


def test_load_refuses_files_that_are_not_predictors(tmp_path: Path) -> None:
    cases = {
        "notes.json": json.dumps({"hello": 1}),
        "text.pt": "plain text",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            load_predictor(tmp_path / name)
    import torch

    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt is not a saved eqsearch predictor"):
        load_predictor(tmp_path / "other.pt")

    # a pickle that needs code to load is refused by weights_only, never executed
    torch.save({"x": datetime.date(2020, 1, 1)}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"code.pt is not a saved predictor"):
        load_predictor(tmp_path / "code.pt")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"format": "eqsearch-predictor"}))
    with pytest.raises(ValueError, match=r"raw.pkl"):
        load_predictor(tmp_path / "raw.pkl")
    with pytest.raises(ValueError, match=r"not found"):
        load_predictor(tmp_path / "missing.pt")


def test_find_predictor_takes_the_newest(samples, tmp_path: Path) -> None:
    space, batch, accuracy = samples
    assert find_predictor(tmp_path) is None
    (tmp_path / "predictor-notes.txt").write_text("not a predictor")
    ridge = build_predictor("ridge", space).fit(batch[:50], accuracy[:50])
    first = ridge.save(tmp_path / predictor_filename("ridge"))
    second = (
        build_predictor("xgboost", space, n_estimators=5)
        .fit(batch[:50], accuracy[:50])
        .save(tmp_path / predictor_filename("xgboost"))
    )
    os.utime(first, (1_000, 1_000))
    assert find_predictor(tmp_path) == second
    os.utime(second, (500, 500))
    assert find_predictor(tmp_path) == first


def test_predictor_oracle_predicts_in_one_batch(samples) -> None:
    space, batch, accuracy = samples
    predictor = build_predictor("ridge", space).fit(batch, accuracy)
    oracle = PredictorOracle(predictor)
    assert oracle.space is space
    values = oracle.evaluate(batch)
    assert values.dtype == np.float64 and values.shape == (len(batch),)
    np.testing.assert_array_equal(values, predictor.predict(batch))


def test_a_loaded_xgboost_predictor_predicts_with_its_thread_count(samples, tmp_path) -> None:
    space, batch, accuracy = samples
    predictor = build_predictor("xgboost", space, n_estimators=20, threads=1)
    predictor.fit(batch[:200], accuracy[:200]).save(tmp_path / "p.json")
    loaded = load_predictor(tmp_path / "p.json")
    settings = json.loads(loaded.booster.save_config())["learner"]["generic_param"]
    assert settings["nthread"] == "1"
    assert np.array_equal(loaded.predict(batch[200:]), predictor.predict(batch[200:]))


def test_a_process_that_skips_sklearn_wrappers_loads_xgboost_without_sklearn(
    samples, tmp_path
) -> None:
    import subprocess
    import sys

    space, batch, accuracy = samples
    predictor = build_predictor("xgboost", space, n_estimators=20)
    predictor.fit(batch[:200], accuracy[:200]).save(tmp_path / "p.json")
    np.save(tmp_path / "expected.npy", predictor.predict(batch[200:]))
    (tmp_path / "configs.json").write_text(json.dumps([c.to_dict() for c in batch[200:]]))
    probe = (
        "import json, sys\n"
        "import numpy as np\n"
        "from eqsearch.space import SubnetConfig\n"
        "from predictors import load_predictor\n"
        "from predictors.xgb import skip_sklearn_wrappers\n"
        "skip_sklearn_wrappers()\n"
        f"directory = {str(tmp_path)!r}\n"
        "loaded = load_predictor(directory + '/p.json')\n"
        "entries = json.load(open(directory + '/configs.json'))\n"
        "configs = [SubnetConfig.from_dict(entry) for entry in entries]\n"
        "same = np.array_equal(loaded.predict(configs), np.load(directory + '/expected.npy'))\n"
        "print(same, 'xgboost' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["True", "True", "False"]
