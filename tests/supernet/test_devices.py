"""Which device and backend each process picks: CUDA faked on the CPU (is_available,
device_count, set_device patched), the model's move to the GPU recorded instead of made."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.errors import InputError
from supernet.devices import resolve_device
from supernet.files.checkpoint import save_supernet
from supernet.networks.build import build_supernet

LAUNCH = {
    "WORLD_SIZE": "2",
    "RANK": "1",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}
VARIABLES = (*LAUNCH, "LOCAL_WORLD_SIZE", "EQSEARCH_DIST_BACKEND", "EQSEARCH_RENDEZVOUS_TIMEOUT")


class _OnTheGpu(Exception):
    """Raised where the model would move to a GPU: the command got that far."""


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Two fake GPUs; returns the log of set_device calls, model moves and group joins."""
    events: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: events.append(("set", device)))
    real_to = torch.nn.Module.to

    def to(module: torch.nn.Module, *args: object, **kwargs: object) -> torch.nn.Module:
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda":
            events.append(("model", torch.device(target)))
            raise _OnTheGpu
        return real_to(module, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.Module, "to", to)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return events


def test_auto_and_cuda_take_the_gpu_of_local_rank(
    fake_cuda: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_device("auto") == torch.device("cuda")  # no launcher: as before
    assert fake_cuda == []
    launch = {**LAUNCH, "WORLD_SIZE": "4", "RANK": "3"}
    assert resolve_device("auto", launch) == torch.device("cuda", 1)
    assert resolve_device("cuda", launch) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", launch) == torch.device("cuda", 0)  # named: kept
    assert resolve_device("cpu", launch) == torch.device("cpu")
    assert fake_cuda == [("set", torch.device("cuda", i)) for i in (1, 1, 0)]
    with pytest.raises(InputError, match=r"LOCAL_RANK=2 but this machine has 2 CUDA device"):
        resolve_device("auto", {**launch, "LOCAL_RANK": "2"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", launch) == torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    supernet = build_supernet(
        "tiny_convnet", num_classes=10, in_channels=1, image_size=8, w_bits=(2, 8), a_bits=(2, 8)
    )
    save_supernet(path, supernet, kind="supernet")
    return path


@pytest.mark.parametrize(
    "command",
    [
        "eval --supernet {checkpoint}",
        "sample --supernet {checkpoint} --output {tmp}/samples.csv --subnets 4",
        "train --model tiny_convnet --dataset digits --epochs 1 --out {tmp}/run --no-progress",
    ],
)
def test_each_command_under_torchrun_uses_the_gpu_of_its_local_rank(
    command: str,
    checkpoint: Path,
    tmp_path: Path,
    fake_cuda: list[tuple[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch.distributed

    def join(**kwargs: object) -> None:
        fake_cuda.append(("join", kwargs["backend"]))

    monkeypatch.setattr(torch.distributed, "init_process_group", join)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: None)
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    argv = shlex.split(command.format(checkpoint=checkpoint, tmp=tmp_path))
    assert main(argv) == 1  # _OnTheGpu stopped it: an unexpected error to the CLI
    gpu = torch.device("cuda", 1)
    assert ("model", gpu) in fake_cuda
    assert all(device == gpu for kind, device in fake_cuda if kind in ("set", "model"))
    if argv[0] == "train":
        # the device is chosen before the backend, and NCCL serves it
        assert fake_cuda.index(("set", gpu)) < fake_cuda.index(("join", "nccl"))
        assert ("join", "gloo") not in fake_cuda


def test_a_cpu_rank_joins_with_gloo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed

    joined: list[object] = []

    def join(**kwargs: object) -> None:
        joined.append(kwargs["backend"])
        raise _OnTheGpu  # stop here: nothing else to see

    monkeypatch.setattr(torch.distributed, "init_process_group", join)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    argv = shlex.split(f"train --model tiny_convnet --dataset digits --out {tmp_path}/run")
    assert main(argv) == 2
    assert joined == ["gloo"]
