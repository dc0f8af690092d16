"""`eqsearch nsga`: exit codes, error lines, files written."""

from __future__ import annotations

import json
import shlex

import pytest

from eqsearch.app.cli import main

from .search_fixtures import enumerable_space, space_only_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint file with a space and no weights: enough for a search without the model."""
    return space_only_checkpoint(tmp_path)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_unreachable_budget_exits_2_stating_the_smallest_average(checkpoint, capsys) -> None:
    out = checkpoint.parent / "out"
    assert main(["nsga", "--supernet", str(checkpoint), "--w-bits", "1.5", "--out", str(out)]) == 2
    assert _error_line(capsys) == (
        "error: the budget --w-bits <= 1.5 cannot be met: the smallest reachable average weight "
        "bits is 2.00"
    )
    assert main(["nsga", "--supernet", str(checkpoint), "--a-bits", "1"]) == 2
    assert "smallest reachable average activation bits is 2.00" in _error_line(capsys)
    assert not out.exists()
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["supernet.pt"]


def test_missing_predictor_names_the_commands_that_make_one(checkpoint, capsys) -> None:
    assert main(["nsga", "--supernet", str(checkpoint), "--w-bits", "3"]) == 2
    line = _error_line(capsys)
    assert f"no predictor beside {checkpoint}" in line
    assert "`eqsearch sample --supernet" in line and "`eqsearch fit-predictor --samples" in line
    assert "--oracle supernet" in line


@pytest.mark.parametrize(
    "arguments, message",
    [
        ("--population 1", "--population must be at least 2"),
        ("--engine optuna", "argument --engine: invalid choice: 'optuna'"),
        ("--target coreml", "argument --target: invalid choice: 'coreml'"),
        ("--objectives accuracy,energy", "objectives must be among accuracy, bitops"),
        ("--objectives bitops,latency", "latency needs --latency-table: none lies in"),
        ("--latency-ms 3", "latency needs --latency-table: none lies in"),
        ("--w-bits three", "argument --w-bits: expected a number; got 'three'"),
        ("--w-bits nan", "argument --w-bits: must be a finite number; got nan"),
        ("--seed 99999999999999999999999", "argument --seed: a seed must be in 0..2**63-1"),
    ],
)
def test_bad_arguments_exit_2(checkpoint, capsys, arguments, message) -> None:
    assert main(["nsga", "--supernet", str(checkpoint), *shlex.split(arguments)]) == 2
    assert message in _error_line(capsys)


def test_missing_checkpoint_exits_2(tmp_path, capsys) -> None:
    assert main(["nsga", "--supernet", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint not found" in _error_line(capsys)


def test_cost_only_search_writes_the_front(checkpoint, capsys) -> None:
    out = checkpoint.parent / "front"
    arguments = (
        f"nsga --supernet {checkpoint} --objectives bitops,w_comp --a-bits 3 --target snpe "
        f"--population 16 --generations 5 --out {out} --no-progress --engine deap"
    )
    assert main(shlex.split(arguments)) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "tensor-asym-asym" in printed
    assert sorted(p.name for p in out.iterdir()) == ["pareto.csv", "pareto.json", "pareto.png"]
    data = json.loads((out / "pareto.json").read_text())
    assert data["info"]["engine"] == "deap" and data["info"]["forms"] == ["tensor-asym-asym"]
    assert all(entry["a_bits"] <= 3 for entry in data["configs"])
    # the entries are what `eqsearch eval --config pareto.json#0` reads
    from eqsearch.app.subnet_choice import load_config_argument

    config = load_config_argument(f"{out / 'pareto.json'}#0", enumerable_space())
    assert str(config.uniform_form) == "tensor-asym-asym"


def test_a_search_on_an_xgboost_predictor_imports_neither_sklearn_nor_scipy_stats(
    checkpoint,
) -> None:
    # the cheapest wins of the command's start-up: xgboost without its scikit-learn wrappers
    # (1.7 s of import on a busy machine), Kendall's τ without scipy.stats (0.7 s)
    import subprocess
    import sys

    import numpy as np

    from predictors import build_predictor, predictor_filename

    space = enumerable_space()
    configs = list(space.sample(np.random.default_rng(0), 60))
    accuracy = np.random.default_rng(1).uniform(90, 99, len(configs))
    predictor = build_predictor("xgboost", space, n_estimators=10)
    predictor.fit(configs, accuracy).save(checkpoint.parent / predictor_filename("xgboost"))
    arguments = [
        *("nsga", "--supernet", str(checkpoint), "--w-bits", "4", "--population", "12"),
        *("--generations", "3", "--out", str(checkpoint.parent / "front"), "--no-progress"),
    ]
    probe = (
        "import sys\n"
        "from eqsearch.app.cli import main\n"
        f"code = main({arguments!r})\n"
        "print(code, 'xgboost' in sys.modules, 'sklearn' in sys.modules, "
        "'scipy.stats' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split()[-4:] == ["0", "True", "False", "False"]
