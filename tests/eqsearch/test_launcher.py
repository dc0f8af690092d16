"""The torchrun environment and rendezvous: bad values named before torch sees them, one line."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from eqsearch.app.cli import main
from eqsearch.errors import InputError
from eqsearch.launcher import (
    check_rendezvous,
    launch_environment,
    local_rank,
    native_stderr_captured,
    process_group_backend,
    quiet_native_logs,
    rendezvous_seconds,
)

TRAIN = shlex.split(
    "train --model tiny_convnet --dataset digits --epochs 1 --w-choices 2,8 --a-choices 2,8 "
    "--holdout 100 --calib-images 100 --no-progress --device cpu"
)
LAUNCH = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
VARIABLES = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "EQSEARCH_RENDEZVOUS_TIMEOUT",
    "EQSEARCH_DIST_BACKEND",
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"WORLD_SIZE": "1e20"}, "WORLD_SIZE must be an integer"),
        ({"WORLD_SIZE": "99999999999999999999"}, "WORLD_SIZE must be in 1..1048576"),
        ({"WORLD_SIZE": "+2"}, "WORLD_SIZE must be an integer"),
        ({"RANK": "\u0661"}, "RANK must be an integer"),  # an Arabic-Indic one, int() takes it
        ({"MASTER_PORT": "abc"}, "MASTER_PORT must be an integer"),
        ({"MASTER_PORT": "99999"}, "MASTER_PORT must be in 1..65535"),
        ({"MASTER_PORT": "0"}, "MASTER_PORT must be in 1..65535"),
        ({"LOCAL_RANK": "abc"}, "LOCAL_RANK must be an integer"),
        ({"LOCAL_RANK": "2"}, "LOCAL_RANK must be in 0..1"),
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"}, "LOCAL_RANK must be in 0..0"),
        ({"LOCAL_WORLD_SIZE": "3", "LOCAL_RANK": "0"}, "LOCAL_WORLD_SIZE must be in 1..2"),
        ({"MASTER_ADDR": "no-such-host.invalid"}, "MASTER_ADDR names a host that does not"),
        ({"EQSEARCH_RENDEZVOUS_TIMEOUT": "1e300"}, "TIMEOUT must be a positive number"),
        ({"EQSEARCH_RENDEZVOUS_TIMEOUT": "1e-9"}, "of seconds in 1..86400"),
        ({"EQSEARCH_RENDEZVOUS_TIMEOUT": "nan"}, "of seconds in 1..86400"),
        ({"EQSEARCH_RENDEZVOUS_TIMEOUT": "inf"}, "of seconds in 1..86400"),
        ({"EQSEARCH_DIST_BACKEND": "mpi"}, "EQSEARCH_DIST_BACKEND must be one of nccl, gloo"),
        ({"EQSEARCH_DIST_BACKEND": "nccl"}, "nccl serves CUDA tensors only"),
    ],
)
def test_a_bad_launch_value_is_named_in_one_line_before_the_rendezvous(
    changes: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch.distributed

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the process group must not be joined with a bad value")

    monkeypatch.setattr(torch.distributed, "init_process_group", never)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**LAUNCH, **changes}.items():
        monkeypatch.setenv(name, value)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "peers" not in lines[0]  # the value is blamed, not the other processes
    assert not (tmp_path / "run").exists()


def test_the_launch_values_read_as_torchrun_sets_them() -> None:
    env = {**LAUNCH, "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert launch_environment(env) == (1, 2)
    assert local_rank(env) == 1
    assert local_rank({}) is None
    check_rendezvous(env)
    assert rendezvous_seconds({}) == 300.0
    assert rendezvous_seconds({"EQSEARCH_RENDEZVOUS_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(InputError, match="EQSEARCH_RENDEZVOUS_TIMEOUT"):
        rendezvous_seconds({"EQSEARCH_RENDEZVOUS_TIMEOUT": "\u0662"})


def test_the_backend_follows_the_device() -> None:
    assert process_group_backend("cuda", {}) == "nccl"
    assert process_group_backend("cpu", {}) == "gloo"
    assert process_group_backend("cuda", {"EQSEARCH_DIST_BACKEND": "gloo"}) == "gloo"
    with pytest.raises(InputError, match="nccl serves CUDA tensors only"):
        process_group_backend("cpu", {"EQSEARCH_DIST_BACKEND": "nccl"})


def test_native_log_level_is_quiet_unless_debug_or_chosen() -> None:
    env: dict[str, str] = {}
    quiet_native_logs(False, env)
    assert env == {"TORCH_CPP_LOG_LEVEL": "ERROR"}
    env = {}
    quiet_native_logs(True, env)
    assert env == {}
    env = {"TORCH_CPP_LOG_LEVEL": "INFO"}
    quiet_native_logs(False, env)
    assert env == {"TORCH_CPP_LOG_LEVEL": "INFO"}


def test_native_stderr_is_captured_and_restored(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    with native_stderr_captured() as lines:
        os.write(2, b"[W socket.cpp] c10d retry\nframe #0\n")
    os.write(2, b"after\n")
    assert lines == ["[W socket.cpp] c10d retry", "frame #0"]
    assert capfd.readouterr().err == "after\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("debug", [False, True])
def test_a_failed_rendezvous_is_one_line_and_c10d_speaks_only_with_debug(
    debug: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # valid values, but nobody listens on the port: c10d retries, logs, and gives up after 1 s
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "WARNING")
    for name, value in {
        **LAUNCH,
        "MASTER_PORT": str(_free_port()),
        "EQSEARCH_RENDEZVOUS_TIMEOUT": "1",
    }.items():
        monkeypatch.setenv(name, value)
    argv = [*TRAIN, "--out", str(tmp_path / "run")]
    assert main(["--debug", *argv] if debug else argv) == 2
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: rank 1 of 2 could not join its peers within 1 s"), err
    assert "frame #" not in lines[-1]
    if debug:
        assert any("c10d" in line for line in lines[:-1]), err
    else:
        assert len(lines) == 1, err
    assert not (tmp_path / "run").exists()
