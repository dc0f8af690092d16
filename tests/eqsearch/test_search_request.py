"""``SearchRequest`` → ``search_checkpoint`` → ``SearchOutcome``: as a notebook calls it, and
the front in tracking (JSON lines, TensorBoard, MLflow) read back offline."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from eqsearch.app.cli import main
from eqsearch.app.search import SearchOutcome, search_checkpoint
from eqsearch.app.search_request import SearchRequest
from eqsearch.errors import InputError
from eqsearch.pareto import read_front

from .search_fixtures import enumerable_space, space_only_checkpoint


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint with a space and no weights: enough for a cost-only search."""
    return space_only_checkpoint(tmp_path)


COST_SEARCH = {"objectives": "bitops,w_comp", "a_bits": 3, "population": 12, "generations": 3}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"solver": "anneal"}, "solver", "solver must be one of pymoo, deap, ilp"),
        ({"population": 1}, "population", "population must be at least 2; got 1"),
        ({"generations": -1}, "generations", "generations must be an integer >= 0; got -1"),
        ({"objectives": ""}, "objectives", "objectives must name at least one objective"),
        ({"objectives": "accuracy,energy"}, "objectives", "got 'energy'"),
        ({"w_bits": 0}, "w_bits", "w_bits must be a positive number; got 0"),
        ({"oracle": "oracle"}, "oracle", "oracle must be one of predictor, supernet"),
        ({"count": 3}, "count", "count is a strategy's setting; the pymoo engine"),
        ({"solver": "uniform", "count": 3}, "count", "count does not apply to the uniform"),
        ({"solver": "ilp", "verify": 2}, "verify", "verify does not apply to the ilp strategy"),
        ({"samples": "s.csv"}, "samples", "samples is read by --refine R only"),
        ({"refine": 1}, "refine", "refine R measures --verify K configs per search"),
        ({"log": "wandb"}, "log", "log takes jsonl, tensorboard, mlflow"),
    ],
)
def test_a_bad_request_names_its_field(fields, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as raised:
        SearchRequest("supernet.pt", **fields)
    assert raised.value.field == field and message in str(raised.value)


def test_the_defaults_follow_the_solver() -> None:
    assert SearchRequest("s.pt").oracle == "predictor" and SearchRequest("s.pt").is_nsga
    strategy = SearchRequest("s.pt", solver="random", objectives=["bitops"])
    assert strategy.oracle == "supernet" and not strategy.is_nsga
    assert strategy.objectives == ("bitops",) and not strategy.needs_supernet
    assert SearchRequest("s.pt", solver="ilp").needs_supernet  # its sensitivities
    assert SearchRequest("s.pt", size=1e6).problem_budgets["size_bytes"] == 1e6
    assert SearchRequest("s.pt", log="jsonl, mlflow,jsonl").log == ("jsonl", "mlflow")


def test_a_notebook_searches_a_checkpoint_and_gets_its_front(checkpoint: Path) -> None:
    out = checkpoint.parent / "front"
    request = SearchRequest(checkpoint, solver="deap", target="snpe", out=out, **COST_SEARCH)
    outcome = search_checkpoint(request)
    assert isinstance(outcome, SearchOutcome) and outcome.tau is None
    assert [path.name for path in outcome.paths] == ["pareto.json", "pareto.csv", "pareto.png"]
    written = read_front(out, enumerable_space())
    assert written.configs == outcome.front.configs and len(outcome.front) >= 1
    assert (outcome.front.column("bitops") == written.column("bitops")).all()
    assert outcome.title == "enumerable: NSGA-II (deap), snpe target A≤3"
    assert outcome.front.info["engine"] == "deap" and outcome.measured is None


def test_the_cli_search_equals_the_library_search(checkpoint: Path) -> None:
    library = search_checkpoint(
        SearchRequest(checkpoint, out=checkpoint.parent / "a", seed=4, **COST_SEARCH)
    )
    line = (
        f"nsga --supernet {checkpoint} --objectives bitops,w_comp --a-bits 3 --population 12 "
        f"--generations 3 --seed 4 --out {checkpoint.parent / 'b'} --no-progress"
    )
    assert main(shlex.split(line)) == 0
    cli = read_front(checkpoint.parent / "b", enumerable_space())
    assert cli.configs == library.front.configs


def test_the_checkpoint_is_read_once(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import supernet.files.checkpoint as files

    reads: list[Path] = []
    real = files.load_checkpoint

    def counted(path, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(files, "load_checkpoint", counted)
    search_checkpoint(SearchRequest(checkpoint, **COST_SEARCH))
    assert reads == [checkpoint]


def test_a_budget_error_carries_its_field_and_the_cli_names_the_flag(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError) as raised:
        search_checkpoint(SearchRequest(checkpoint, objectives="bitops", w_bits=1.5))
    assert raised.value.field == "w_bits"
    assert str(raised.value).startswith("the budget w_bits <= 1.5 cannot be met")
    assert main(["nsga", "--supernet", str(checkpoint), "--objectives", "bitops", "--size", "1"])
    assert capsys.readouterr().err.startswith("error: the budget --size <= 1 cannot be met")


def _tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def _fit_predictor(checkpoint: Path) -> None:
    """A ridge predictor beside the checkpoint: accuracy rises with the bits."""
    from eqsearch import costs
    from predictors import build_predictor, predictor_filename

    space = enumerable_space()
    configs = list(space.sample(np.random.default_rng(0), 60))
    batch = space.batch(configs)
    accuracy = 60 + 4 * costs.average_weight_bits(space, batch)
    predictor = build_predictor("ridge", space)
    predictor.fit(configs, accuracy).save(checkpoint.parent / predictor_filename("ridge"))


def test_the_front_goes_to_jsonl_tensorboard_and_mlflow(checkpoint: Path) -> None:
    from mlflow.tracking import MlflowClient

    _fit_predictor(checkpoint)
    out = checkpoint.parent / "tracked"
    line = (
        f"nsga --supernet {checkpoint} --population 16 --generations 5 --out {out} "
        "--no-progress --log jsonl,tensorboard,mlflow"
    )
    assert main(shlex.split(line)) == 0
    front = read_front(out, enumerable_space())
    assert len(front) >= 3
    entries = [json.loads(text) for text in (out / "front_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in entries[:-1]] == list(range(len(front)))
    assert [entry["bitops"] for entry in entries[:-1]] == front.column("bitops").tolist()
    assert [entry["accuracy"] for entry in entries[:-1]] == front.column("accuracy").tolist()
    summary = entries[-1]
    assert summary["phase"] == "search" and summary["front_size"] == len(front)
    assert summary["hypervolume"] > 0 and "kendall_tau" not in summary
    found = _tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in found["front/accuracy"]] == list(range(len(front)))
    assert [value for _, value in found["front/accuracy"]] == pytest.approx(
        front.column("accuracy").tolist()
    )
    assert found["search/front_size"] == [(0, float(len(front)))]
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("eqsearch").experiment_id])
    history = sorted(
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "front/bitops")
    )
    assert [step for step, _ in history] == list(range(len(front)))
    assert [value for _, value in history] == pytest.approx(front.column("bitops").tolist())
    assert run.data.metrics["search/hypervolume"] == pytest.approx(summary["hypervolume"])
    assert json.loads(run.data.params["solver"]) == "pymoo"


def test_a_verified_front_logs_its_tau(tmp_path: Path) -> None:
    from eqsearch.app.front_tracking import front_entries
    from eqsearch.pareto import ParetoFront
    from eqsearch.problem import make_problem

    space = enumerable_space()
    problem = make_problem(space, objectives=("bitops", "w_comp"))
    configs = list(space.sample(np.random.default_rng(0), 5))
    from eqsearch.strategies.front import candidate_front

    front = candidate_front(problem, space.batch(configs), {})
    assert isinstance(front, ParetoFront)
    entries = front_entries(front, tau=0.5)
    assert entries[-1]["kendall_tau"] == 0.5 and entries[-1]["front_size"] == len(front)


def test_a_constraint_no_sampled_config_met_is_the_errors_field() -> None:
    from eqsearch.problem import Constraint, SearchProblem, make_problem

    space = enumerable_space()
    base = make_problem(space, objectives=("bitops",))
    never = Constraint("never", lambda batch: np.ones(len(batch)), 0.0)
    also = Constraint("also_never", lambda batch: np.ones(len(batch)), 0.0)
    problem = SearchProblem(space, base.objectives, [never, also])
    with pytest.raises(InputError) as raised:
        problem.initial_population(np.random.default_rng(0), 4)
    assert raised.value.field == "never"
    assert str(raised.value).endswith("none met never <= 0, also_never <= 0")
    assert raised.value.naming("--never").endswith("none met --never <= 0, also_never <= 0")


def test_a_budget_keyword_error_names_its_keyword() -> None:
    from eqsearch.problem import make_problem

    with pytest.raises(InputError) as raised:
        make_problem(enumerable_space(), objectives=("bitops",), size_bytes=-1)
    assert raised.value.field == "size_bytes"
    assert raised.value.naming("--size") == "--size must be a positive number of bytes; got -1"
