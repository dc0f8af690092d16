"""The studies follow the output rule of every command: nothing replaced that is not theirs,
every option checked before any work, nothing left behind by a refusal, one writer per
directory, and --force / --no-progress on each."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import build_parser, main
from studies.compare_predictors import OUTPUTS as PREDICTORS_OUTPUTS
from studies.joint_search import OUTPUTS as JOINT_OUTPUTS
from studies.strategies import OUTPUTS as STRATEGIES_OUTPUTS
from studies.tune_loss_weights import OUTPUTS as TUNE_OUTPUTS
from tests.eqsearch.test_output_rules import refused

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("predictors", "tune-loss", "ablations", "strategies", "joint")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny_convnet supernet with 12 measured samples beside it."""
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
    directory = tmp_path_factory.mktemp("study-outputs") / "run"
    save_supernet(
        directory / "supernet.pt", supernet, data=spec.to_dict(), train_config={"bn_images": 32}
    )
    samples = ["sample", "--supernet", str(directory / "supernet.pt"), "--subnets", "12"]
    assert main([*samples, "--no-progress"]) == 0
    return directory


def _extra(study: str, run: Path) -> list[str]:
    checkpoint = str(run / "supernet.pt")
    return {
        "predictors": ["--samples", str(run / "samples.csv"), "--backends", "ridge"],
        "tune-loss": ["--trials", "0"],
        "ablations": [],
        "strategies": ["--supernet", checkpoint],
        "joint": ["--supernet", checkpoint],
    }[study]


REPORTS = {
    "predictors": "predictors.md",
    "tune-loss": "trials.csv",
    "ablations": "report.md",
    "strategies": "strategies.md",
    "joint": "joint.md",
}


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_takes_force_and_no_progress(study: str) -> None:
    parser = build_parser()
    args = parser.parse_args(["study", study, *_extra(study, Path("r")), "--out", "o", "--force"])
    assert args.force is True and args.no_progress is False
    args = parser.parse_args(
        ["study", study, *_extra(study, Path("r")), "--out", "o", "--no-progress"]
    )
    assert args.force is False and args.no_progress is True


@pytest.mark.parametrize("study", STUDIES)
def test_a_checkpoint_at_a_report_name_is_never_replaced(
    study: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / REPORTS[study]).write_bytes((run / "supernet.pt").read_bytes())
    argv = ["study", study, *_extra(study, run), "--out", str(out), "--no-progress"]
    for extra in ([], ["--force"]):
        line = refused(capsys, [*argv, *extra], tmp_path)
        assert f"{REPORTS[study]} holds an eqsearch checkpoint; not replacing it" in line


@pytest.mark.parametrize(
    ("study", "outputs"),
    [
        ("predictors", PREDICTORS_OUTPUTS),
        ("strategies", STRATEGIES_OUTPUTS),
        ("joint", JOINT_OUTPUTS),
        ("tune-loss", TUNE_OUTPUTS),
    ],
)
def test_every_output_name_is_checked(
    study: str,
    outputs: dict[str, str],
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["study", study, *_extra(study, run), "--no-progress"]
    for name in outputs:
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_bytes((run / "supernet.pt").read_bytes())
        line = refused(capsys, [*argv, "--out", str(out), "--force"], tmp_path)
        assert f"{name} holds an eqsearch checkpoint" in line


@pytest.mark.parametrize("study", STUDIES)
def test_a_report_of_the_same_kind_is_replaced_only_with_force(
    study: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / REPORTS[study]).write_text("my own notes\n")
    argv = ["study", study, *_extra(study, run), "--out", str(out), "--no-progress"]
    line = refused(capsys, argv, tmp_path)
    assert f"{REPORTS[study]} exists; pass --force to replace it" in line


def test_predictors_study_beside_the_samples_needs_force_for_an_old_report(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run / "predictors.md"
    argv = ["study", "predictors", "--samples", str(run / "samples.csv"), "--backends", "ridge"]
    argv += ["--folds", "3", "--no-progress"]
    assert main(argv) == 0
    first = report.read_text()
    line = refused(capsys, argv, run)
    assert "predictors.md exists; pass --force" in line
    report.write_text("an older report\n")
    assert main([*argv, "--force"]) == 0
    assert report.read_text().splitlines()[:2] == first.splitlines()[:2]
    assert report.read_text().splitlines()[2].startswith("| ridge | ")
    report.unlink()
    (run / "predictors.png").unlink()


@pytest.mark.parametrize(
    ("study", "extra", "message"),
    [
        ("joint", ["--samples", "missing.csv"], "samples file not found"),
        ("strategies", ["--backend", "svm"], "unknown predictor backend 'svm'"),
        ("strategies", ["--samples", "missing.csv"], "samples file not found"),
        ("tune-loss", ["--probe-mixed", "-1"], "must be an integer >= 0"),
        ("tune-loss", ["--probe-mixed", "1000000000"], "probe_mixed must be an integer in 0..1000"),
        ("tune-loss", ["--seed", "99999999999999999999"], "argument --seed: is out of range"),
        ("tune-loss", ["--seed", "4294967296"], "a sampler seed must be in 0..2**32-1"),
        ("tune-loss", ["--trials", "-1"], "must be an integer >= 0"),
        ("tune-loss", ["--epochs", "0"], "must be a positive integer"),
        ("tune-loss", ["--storage", "sqlite:////no/such/directory/t.db"], "cannot open the"),
        ("predictors", ["--folds", "1"], "--folds must be at least 2"),
        ("predictors", ["--backends", "svm"], "unknown backend 'svm'"),
        ("ablations", ["--parts", "dropout"], "parts must be a non-empty subset"),
    ],
)
def test_a_refusal_before_any_work_leaves_no_out_directory(
    study: str,
    extra: list[str],
    message: str,
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import studies.strategies
    import studies.tune_loss_weights

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(studies.strategies, "scoring_evaluation", no_work)
    monkeypatch.setattr(studies.tune_loss_weights, "train_supernet", no_work)
    out = tmp_path / "new" / "study"
    argv = ["study", study, *_extra(study, run), *extra, "--out", str(out), "--no-progress"]
    line = refused(capsys, argv, tmp_path)
    assert message in line
    assert not (tmp_path / "new").exists()


def test_joint_on_a_supernet_that_is_not_joint_leaves_no_out_directory(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "joint"
    argv = ["study", "joint", "--supernet", str(run / "supernet.pt"), "--out", str(out)]
    line = refused(capsys, [*argv, "--no-progress"], tmp_path)
    assert "is not a joint (elastic-architecture) supernet" in line
    assert not (tmp_path / "new").exists()


def test_tune_loss_with_a_nan_in_its_base_config_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import studies.tune_loss_weights

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a trial trained")

    monkeypatch.setattr(studies.tune_loss_weights, "train_supernet", no_work)
    config = tmp_path / "base.json"
    config.write_text('{"model": "tiny_convnet", "dataset": "digits", "target_kurtosis": NaN}')
    argv = ["study", "tune-loss", "--config", str(config), "--out", str(tmp_path / "t")]
    line = refused(capsys, argv, tmp_path)
    assert "'target_kurtosis' must be finite" in line


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A study directory another process holds (exclusively) until the test ends."""
    directory = tmp_path / "held"
    code = (
        "import sys\n"
        "from eqsearch.locks import hold_directory\n"
        f"with hold_directory({str(directory)!r}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield directory
    process.communicate(input="", timeout=30)


@pytest.mark.parametrize("study", STUDIES)
def test_a_study_into_a_directory_another_process_writes_is_refused(
    study: str, run: Path, held: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["study", study, *_extra(study, run), "--out", str(held), "--no-progress"]
    line = refused(capsys, argv, held.parent)
    assert "another process is writing the study directory" in line or (
        study == "predictors" and "another process is writing the output directory" in line
    )
