"""Optuna studies in PostgreSQL: the README's postgresql:// URL against a real server.

The server is started by the test (initdb + pg_ctl from Debian's ``postgresql`` package, which
CI installs), on a free localhost port in a temporary directory, and stopped afterwards.
Without the package or the psycopg driver the server tests are skipped with the reason.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from studies.tune_loss_weights import TuneConfig, open_study
from studies.tune_storage import storage_url_with_driver
from supernet.training.config import TrainConfig

PASSWORD = "eqsearch-test"
BASE = TrainConfig(model="tiny_convnet", dataset="digits")


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A throwaway PostgreSQL server on 127.0.0.1; yields its port."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql package provides initdb)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the psycopg driver is not installed: pip install 'eqsearch[postgres]'")
    prefix: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="eqsearch-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(directory)
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(directory, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = directory / "data"
    password_file = directory / "password"
    password_file.write_text(PASSWORD)
    if prefix:
        os.chown(password_file, user.pw_uid, user.pw_gid)
    port = _free_port()

    def run(*command: str) -> None:
        # no pipes: the server that pg_ctl starts would hold them open
        subprocess.run(
            [*prefix, *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    run(
        str(binaries / "initdb"), "-D", str(data), "-U", "eqsearch", "--auth=scram-sha-256",
        f"--pwfile={password_file}",
    )  # fmt: skip
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1"
    log = str(directory / "server.log")
    try:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w", "start")
        yield port
    finally:
        if (data / "postmaster.pid").exists():
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


def _tune(tmp_path: Path, url: str, name: str = "lenet") -> TuneConfig:
    return TuneConfig(base=BASE, out_dir=str(tmp_path), storage=url, study_name=name)


def test_the_documented_url_holds_a_study_across_workers(server: int, tmp_path: Path) -> None:
    url = f"postgresql://eqsearch:{PASSWORD}@127.0.0.1:{server}/postgres"
    assert storage_url_with_driver(url).startswith("postgresql+psycopg://")
    study = open_study(_tune(tmp_path, url))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    # another worker (a second open of the same name) continues the same study
    again = open_study(_tune(tmp_path, url))
    again.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    trials = open_study(_tune(tmp_path, url)).trials
    assert len(trials) == 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_wrong_password_is_one_line_without_the_password(server: int, tmp_path: Path) -> None:
    url = f"postgresql://eqsearch:not-{PASSWORD}@127.0.0.1:{server}/postgres"
    with pytest.raises(ValueError, match="password authentication failed") as error:
        open_study(_tune(tmp_path, url))
    assert "not-" not in str(error.value) and "\n" not in str(error.value)


def test_an_unreachable_server_exits_2_with_one_error_line(tmp_path: Path) -> None:
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the psycopg driver is not installed: pip install 'eqsearch[postgres]'")
    url = f"postgresql://eqsearch:secret@127.0.0.1:{_free_port()}/postgres"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eqsearch",
            "study",
            "tune-loss",
            "--out",
            str(tmp_path / "t"),
            "--storage",
            url,
            "--trials",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the study storage")
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_postgres_urls_name_the_installed_driver() -> None:
    assert storage_url_with_driver("sqlite:///x.db") == "sqlite:///x.db"
    named = "postgresql+psycopg2://u@h/db"
    assert storage_url_with_driver(named) == named
    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
        assert storage_url_with_driver("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
