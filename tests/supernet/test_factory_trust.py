"""A checkpoint or config file never chooses code: model factories it names run only when the
user names them too (a flag, a Python call)."""

from __future__ import annotations

import itertools
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eqsearch import factories
from eqsearch.app.cli import main
from eqsearch.errors import InputError
from supernet import build_supernet, init_quantizers
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec
from supernet.files.checkpoint import load_supernet, save_supernet
from supernet.training.config import TrainConfig

_NAMES = itertools.count()


@pytest.fixture(autouse=True)
def nothing_trusted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no factory trusted (other tests of this process named some)."""
    monkeypatch.setattr(factories, "_TRUSTED", set())
    yield


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with a tiny_convnet checkpoint (quantizers initialised, untrained)."""
    spec = DataSpec("digits", holdout=60, eval_batch_size=60)
    data = build_data(spec, seed=0)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 8), a_bits=(2, 8)
    )
    init_quantizers(supernet, data.calibration_images(32))
    directory = tmp_path_factory.mktemp("trust-run")
    config = TrainConfig(
        model="tiny_convnet", dataset="digits", epochs=1, holdout=60, bn_images=30
    ).to_dict()
    save_supernet(
        directory / "supernet.pt",
        supernet,
        kind="supernet",
        data=spec.to_dict(),
        train_config=config,
        history=[],
        epoch=1,
    )
    return directory


def _marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on the path that writes a marker file when it is imported; returns its
    factory reference and the marker's path."""
    name = f"planted_module_{os.getpid()}_{next(_NAMES)}"
    marker = tmp_path / f"{name}.ran"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from supernet.networks.models import tiny_convnet\n"
        "def factory(num_classes, in_channels, image_size):\n"
        "    return tiny_convnet(num_classes, in_channels, image_size)\n"
        "factory.image_size = 8\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:factory", marker


def _planted_checkpoint(run: Path, tmp_path: Path, reference: str) -> Path:
    """A copy of the run whose checkpoint (and stored train config) names ``reference``."""
    directory = tmp_path / "planted-run"
    directory.mkdir()
    payload = torch.load(run / "supernet.pt", weights_only=True)
    payload["build_info"]["model"] = reference
    payload["train_config"]["model"] = reference
    torch.save(payload, directory / "supernet.pt")
    return directory / "supernet.pt"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error
    return error


COMMANDS = {
    "eval": "eval --supernet {checkpoint}",
    "eval-uniform": "eval --supernet {checkpoint} --uniform 8/8",
    "export": "export --supernet {checkpoint} --uniform 8/8 --output {out}/model.onnx",
    "sample": "sample --supernet {checkpoint} --subnets 4 --no-progress",
    "nsga-oracle": "nsga --supernet {checkpoint} --oracle supernet --population 4 "
    "--generations 1 --no-progress",
    "strategy": "strategy uniform --supernet {checkpoint} --no-progress",
    "train-resume": "train --resume --out {run} --no-progress",
    "study-strategies": "study strategies --supernet {checkpoint} --out {out}/study",
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_imports_a_factory_named_by_a_checkpoint(
    command: str,
    run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference, marker = _marker_module(tmp_path, monkeypatch)
    checkpoint = _planted_checkpoint(run, tmp_path, reference)
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.csv").write_text("w_bits,a_bits\n")
    before = _snapshot(tmp_path)
    line = COMMANDS[command].format(checkpoint=checkpoint, out=out, run=checkpoint.parent)
    assert main(line.split()) == 2
    error = _one_error_line(capsys)
    assert f"--trust-model {reference}" in error, error
    assert not marker.exists()
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("reference", ["os:system", "antigravity:geohash", "os:setpriority"])
def test_standard_library_functions_named_by_a_checkpoint_are_refused(
    reference: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _planted_checkpoint(run, tmp_path, reference)
    calls: list[object] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "system", lambda *a: calls.append(a))
        patch.setattr(os, "setpriority", lambda *a: calls.append(a))
        assert main(["eval", "--supernet", str(checkpoint)]) == 2
    assert calls == []
    assert "antigravity" not in __import__("sys").modules
    assert reference in _one_error_line(capsys)


def test_the_trust_flag_lets_a_checkpoint_of_ones_own_model_load(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, marker = _marker_module(tmp_path, monkeypatch)
    checkpoint = _planted_checkpoint(run, tmp_path, reference)
    table = tmp_path / "table.json"
    line = ["eval", "--supernet", str(checkpoint), "--uniform", "8/8", "--json", str(table)]
    assert main([*line, "--trust-model", reference]) == 0
    assert marker.read_text() == "imported"
    rows = json.loads(table.read_text()).values()
    assert {row["form"] for row in rows} >= {"channel-sym-sym", "tensor-asym-asym"}
    # the trust lasted for that command only
    assert not factories.is_trusted(reference)
    table.unlink()
    assert main(line) == 2
    assert "--trust-model" in _one_error_line(capsys)


def test_the_python_api_refuses_until_the_user_names_the_factory(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, marker = _marker_module(tmp_path, monkeypatch)
    checkpoint = _planted_checkpoint(run, tmp_path, reference)
    with pytest.raises(InputError, match=r"names the model factory .*trust_factories"):
        load_supernet(checkpoint)
    assert not marker.exists()
    factories.trust_factories([reference])
    supernet, _ = load_supernet(checkpoint)
    assert marker.exists()
    reference_net, _ = load_supernet(run / "supernet.pt")
    images = torch.randn(3, 1, 8, 8)
    config = supernet.space.uniform(2, 2)
    with torch.no_grad(), supernet.using(config), reference_net.using(config):
        assert torch.equal(supernet(images), reference_net(images))


def test_building_a_factory_in_python_trusts_it_for_the_process(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = _marker_module(tmp_path, monkeypatch)
    checkpoint = _planted_checkpoint(run, tmp_path, reference)
    build_supernet(reference, num_classes=10, in_channels=1)
    assert load_supernet(checkpoint)[0].build_info["model"] == reference


def test_a_config_file_naming_a_factory_is_refused_unless_the_flag_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, marker = _marker_module(tmp_path, monkeypatch)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": reference, "dataset": "digits"}))
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps({"model": "os:system", "dataset": "digits"}))
    out = tmp_path / "run"
    for path in (config, hostile):
        assert main(["train", "--config", str(path), "--out", str(out)]) == 2
        assert "--trust-model" in _one_error_line(capsys)
    assert not marker.exists() and not out.exists()
    with pytest.raises(InputError, match="names the model factory 'os:system'"):
        TrainConfig.from_json(hostile)
    small = shlex.split(
        "--epochs 1 --holdout 40 --calib-images 40 --quant-init-images 16 --w-choices 2,8 "
        "--a-choices 2,8 --no-progress"
    )
    line = ["train", "--config", str(config), "--out", str(out), *small]
    assert main([*line, "--model", reference]) == 0
    assert marker.exists() and (out / "supernet.pt").is_file()


def test_a_factory_is_found_by_file_path_and_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "from supernet.networks.models import tiny_convnet\n"
        "def make(num_classes, in_channels, image_size):\n"
        "    return tiny_convnet(num_classes, in_channels, image_size)\n"
    )
    (tmp_path / "nets_by_path.py").write_text(source)
    net = build_supernet(f"{tmp_path / 'nets_by_path.py'}:make", num_classes=3, in_channels=1)
    assert len(net.space.layers) == 4
    working = tmp_path / "work"
    working.mkdir()
    name = f"nets_in_cwd_{os.getpid()}"
    (working / f"{name}.py").write_text(source)
    monkeypatch.chdir(working)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    factories.locate_module(factories.parse_reference(f"{name}:make"))
    assert len(build_supernet(f"{name}:make", num_classes=3, in_channels=1).space.layers) == 4
    with pytest.raises(InputError, match="cannot import no_module_here"):
        factories.locate_module(factories.parse_reference("no_module_here:make"))
    with pytest.raises(InputError, match="no such file"):
        factories.locate_module(factories.parse_reference("./missing.py:make"))


def test_a_missing_factory_module_is_named_before_torch_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys; from eqsearch.app.cli import main; code = main(['train', '--model', "
        f"'no_such_package.nets:make', '--out', {str(tmp_path / 'run')!r}]); "
        "print(code, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split() == ["2", "False"]
    assert "cannot import no_such_package.nets" in result.stderr
