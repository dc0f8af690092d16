"""`eqsearch strategy`: fronts written like nsga's, sensitivities cached, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eqsearch import costs
from eqsearch.app.cli import main
from eqsearch.pareto import read_front
from eqsearch.space import QuantForm

TENSORRT = QuantForm("channel", True, True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_convnet supernet on the 8×8 digits, quantizers initialised, untrained."""
    from supernet import build_supernet, init_quantizers
    from supernet.data.datasets import build_data
    from supernet.data.spec import DataSpec
    from supernet.files.checkpoint import save_supernet

    spec = DataSpec("digits", holdout=120, eval_batch_size=120)
    data = build_data(spec, seed=0)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    init_quantizers(supernet, data.calibration_images(64))
    path = tmp_path_factory.mktemp("strategy-run") / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 32})
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def _run(checkpoint: Path, out: Path, *arguments: str) -> int:
    return main(
        [
            "strategy",
            *arguments,
            "--supernet",
            str(checkpoint),
            "--target",
            "tensorrt",
            "--out",
            str(out),
            "--no-progress",
        ]
    )


@pytest.mark.slow
def test_ilp_writes_a_front_and_caches_its_sensitivities(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supernet.files.checkpoint import load_supernet

    out = tmp_path / "ilp"
    arguments = ("ilp", "--budgets", "4", "--probes", "2", "--images", "64")
    assert _run(checkpoint, out, *arguments) == 0
    printed = capsys.readouterr().out
    assert "hessian sensitivities computed and cached" in printed
    cached = sorted(checkpoint.parent.glob("sensitivities-hessian-*.json"))
    assert len(cached) == 1
    space = load_supernet(checkpoint)[0].space
    front = read_front(out, space)
    assert front.info["strategy"] == "ilp" and front.info["sensitivity"] == "hessian"
    assert front.info["oracle"] == "supernet" and 1 <= len(front) <= 4
    assert all(config.uniform_form == TENSORRT for config in front.configs)
    # a rerun reads the cache (and needs --force for the front)
    assert _run(checkpoint, out, *arguments) == 2
    assert "pass --force" in _error_line(capsys)
    assert _run(checkpoint, out, *arguments, "--force") == 0
    assert "hessian sensitivities reused" in capsys.readouterr().out
    # other settings are another cache file, not an overwrite
    assert _run(checkpoint, out, *arguments[:-2], "--images", "32", "--force") == 0
    assert len(list(checkpoint.parent.glob("sensitivities-hessian-*.json"))) == 2


@pytest.mark.slow
def test_greedy_on_measured_sensitivities_reports_measured_accuracies(
    checkpoint: Path, tmp_path: Path
) -> None:
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

    out = tmp_path / "greedy"
    assert _run(checkpoint, out, "greedy", "--sensitivity", "measured", "--w-bits", "6") == 0
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="holdout")
    front = read_front(out, supernet.space)
    assert front.info["sensitivity"] == "measured" and front.info["sweep"] == "bitops"
    assert (costs.average_weight_bits(supernet.space, front.batch) <= 6).all()
    measured = supernet_oracle(supernet, evaluation).evaluate(front.configs)
    np.testing.assert_allclose(front.column("accuracy"), measured)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("uniform", "--w-bits", "4"), lambda front: len(front) >= 1),
        (("random", "--count", "5", "--seed", "3"), lambda front: front.info["count"] == 5),
    ],
)
def test_uniform_and_random(checkpoint: Path, tmp_path: Path, arguments, expected) -> None:  # type: ignore[no-untyped-def]
    from supernet.files.checkpoint import load_supernet

    assert _run(checkpoint, tmp_path, *arguments) == 0
    front = read_front(tmp_path, load_supernet(checkpoint)[0].space)
    assert front.info["strategy"] == arguments[0] and expected(front)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("uniform", "--sensitivity", "measured"), "--sensitivity does not apply"),
        (("random", "--budgets", "3"), "--budgets does not apply"),
        (("ilp", "--count", "3"), "--count does not apply"),
        (("uniform", "--budgets", "3"), "--budgets does not apply"),
        (("greedy", "--predictor", "p.json"), "--predictor does not apply"),
        (("ilp", "--w-bits", "1.5"), "the budget --w-bits <= 1.5 cannot be met"),
        (("anneal",), "invalid choice: 'anneal'"),
        (("random", "--count", "0"), "must be a positive integer"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: tuple[str, ...],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert _run(checkpoint, out, *arguments) == 2
    assert message in _error_line(capsys)
    assert not out.exists()


# -- nsga --refine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(checkpoint: Path) -> Path:
    """Samples and a ridge predictor beside the tiny checkpoint."""
    assert main(["sample", "--supernet", str(checkpoint), "--subnets", "40", "--no-progress"]) == 0
    samples = checkpoint.parent / "samples.csv"
    assert main(["fit-predictor", "--samples", str(samples), "--backend", "ridge"]) == 0
    return samples


@pytest.mark.slow
def test_nsga_refine_writes_the_measured_front(
    checkpoint: Path, fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

    capsys.readouterr()
    arguments = ["nsga", "--supernet", str(checkpoint), "--refine", "2", "--verify", "3"]
    arguments += ["--population", "10", "--generations", "3", "--w-bits", "6", "--no-progress"]
    assert main([*arguments, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="holdout")
    front = read_front(tmp_path, supernet.space)
    assert front.info["strategy"] == "nsga2-refined" and front.info["refine_rounds"] == 2
    rounds = front.info["rounds"]
    new = [entry["measured"] for entry in rounds]
    assert len(rounds) == 3 and 1 <= new[0] <= 3 and sum(new) == front.info["measurements"]
    # each search is fitted on the samples and everything measured before it
    assert [entry["samples"] for entry in rounds] == [40, 40 + new[0], 40 + new[0] + new[1]]
    assert f"{sum(new)} configs measured on the supernet" in printed
    # the front's accuracy is measured, on the images the samples were scored on
    measured = supernet_oracle(supernet, evaluation).evaluate(front.configs)
    np.testing.assert_allclose(front.column("accuracy"), measured)
    assert (costs.average_weight_bits(supernet.space, front.batch) <= 6).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--refine", "1"], "--refine R measures --verify K configs per search"),
        (["--refine", "1", "--verify", "2", "--oracle", "supernet"], "needs --oracle predictor"),
        (["--samples", "s.csv"], "--samples is read by --refine R only"),
        (["--refine", "1", "--verify", "2", "--objectives", "bitops"], "needs accuracy"),
        (["--refine", "-1"], "must be an integer >= 0"),
    ],
)
def test_nsga_refine_refuses_flags_that_do_not_go_with_it(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    arguments = ["nsga", "--supernet", str(checkpoint), "--out", str(out), *extra]
    assert main(arguments) == 2
    assert message in _error_line(capsys)
    assert not out.exists()


def test_nsga_refine_needs_the_samples(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["nsga", "--supernet", str(checkpoint), "--refine", "1", "--verify", "2"]
    missing = tmp_path / "none.csv"
    assert main([*arguments, "--samples", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing} not found" in _error_line(capsys)


class _Payload:
    """A pickle that would create a file when loaded (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hostile(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints that must be refused: a code pickle, random bytes, an fp.pt, NaN weights."""
    import os

    folder = tmp_path_factory.mktemp("hostile-strategy")
    paths = {"marker": folder / "PAYLOAD-RAN"}
    torch.save({"state_dict": _Payload(paths["marker"])}, folder / "pickle.pt")
    (folder / "random.pt").write_bytes(os.urandom(2048))
    payload = torch.load(checkpoint, weights_only=True)
    torch.save({**payload, "kind": "fp"}, folder / "fp.pt")
    name = next(key for key in payload["state_dict"] if key.endswith(".weight"))
    payload["state_dict"][name] = payload["state_dict"][name] * float("nan")
    torch.save(payload, folder / "nan.pt")
    for name in ("pickle", "random", "fp", "nan"):
        paths[name] = folder / f"{name}.pt"
    return paths


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("pickle", [], "nothing in it was executed"),
        ("random", [], "truncated or not a checkpoint"),
        ("fp", [], "is a full-precision checkpoint"),
        ("nan", [], "non-finite weights"),
        ("checkpoint", ["--device", "tpu"], "--device must be"),
        (
            "checkpoint",
            ["--oracle", "predictor", "--predictor", "/nonexistent/p.json"],
            "predictor file not found",
        ),
    ],
)
def test_hostile_checkpoints_are_refused_without_running_anything(
    checkpoint: Path,
    hostile: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    extra: list[str],
    message: str,
) -> None:
    path = checkpoint if name == "checkpoint" else hostile[name]
    out = tmp_path / "out"
    arguments = ["strategy", "uniform", "--supernet", str(path), "--out", str(out), *extra]
    assert main(arguments) == 2
    assert message in _error_line(capsys)
    assert not out.exists() and not hostile["marker"].exists()


# -- the data the supernet scores on -------------------------------------------------------


@pytest.fixture
def recorded_data(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Every ``checkpoint_data`` call's options (the data a command scores subnets on)."""
    import supernet.evaluation.evaluate as evaluate

    seen: list[dict[str, object]] = []
    real = evaluate.checkpoint_data

    def recorded(checkpoint, **options):  # type: ignore[no-untyped-def]
        seen.append(options)
        return real(checkpoint, **options)

    monkeypatch.setattr(evaluate, "checkpoint_data", recorded)
    return seen


def test_strategy_scores_on_the_data_options_it_is_given(
    checkpoint: Path, tmp_path: Path, recorded_data: list[dict[str, object]]
) -> None:
    from supernet.evaluation.evaluate import load_for_evaluation, supernet_oracle

    data = ["--dataset", "digits", "--data-root", str(tmp_path), "--transforms", "none"]
    assert _run(checkpoint, tmp_path / "u", "uniform", "--w-bits", "4", *data) == 0
    overrides = {"data_root": str(tmp_path), "dataset": "digits", "transforms": "none"}
    assert recorded_data == [overrides]
    supernet, _, evaluation = load_for_evaluation(checkpoint, split="holdout", **overrides)
    front = read_front(tmp_path / "u", supernet.space)
    measured = supernet_oracle(supernet, evaluation).evaluate(front.configs)
    np.testing.assert_allclose(front.column("accuracy"), measured)


def test_nsga_verify_reads_the_checkpoint_and_builds_its_images_once(
    checkpoint: Path,
    tmp_path: Path,
    recorded_data: list[dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import supernet.files.checkpoint as files

    reads: list[Path] = []
    real = files.load_checkpoint

    def counted(path, **options):  # type: ignore[no-untyped-def]
        reads.append(Path(path))
        return real(path, **options)

    monkeypatch.setattr(files, "load_checkpoint", counted)
    arguments = ["nsga", "--supernet", str(checkpoint), "--oracle", "supernet", "--verify", "2"]
    arguments += ["--population", "4", "--generations", "1", "--w-bits", "6", "--no-progress"]
    assert main([*arguments, "--dataset", "digits", "--out", str(tmp_path)]) == 0
    assert reads == [checkpoint]
    assert recorded_data == [{"data_root": None, "dataset": "digits", "transforms": None}]
    front = read_front(tmp_path, files.load_supernet(checkpoint)[0].space)
    assert front.info["oracle"] == "supernet" and front.measured is not None
    verified = front.measured[~np.isnan(front.measured)]
    assert len(verified) == min(2, len(front))
    # the supernet oracle's accuracy and its measurement are the same scoring
    np.testing.assert_allclose(verified, front.column("accuracy")[~np.isnan(front.measured)])


def test_strategy_logs_its_front_as_json_lines(checkpoint: Path, tmp_path: Path) -> None:
    import json

    from supernet.files.checkpoint import load_supernet

    out = tmp_path / "random"
    assert _run(checkpoint, out, "random", "--count", "6", "--log", "jsonl") == 0
    front = read_front(out, load_supernet(checkpoint)[0].space)
    lines = (out / "front_log.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == len(front) + 1
    assert [entry["accuracy"] for entry in entries[:-1]] == front.column("accuracy").tolist()
    summary = entries[-1]
    assert set(summary) == {"phase", "epoch", "front_size", "hypervolume"}
    assert (summary["phase"], summary["epoch"], summary["front_size"]) == ("search", 0, len(front))
    assert summary["hypervolume"] > 0
