"""Forked measuring workers: results in order, errors raised, workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from supernet import build_supernet, init_quantizers
from supernet.evaluation.oracle import SupernetOracle
from supernet.parallel import can_fork, ordered_map

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs the fork start method")

REPO = Path(__file__).resolve().parents[2]


def test_results_come_in_order_from_state_the_workers_inherit() -> None:
    offsets = {"value": 100}  # read by the workers through the fork, never pickled

    def slow_then_fast(item: int) -> tuple[int, int, int]:
        time.sleep(0.05 * (5 - item))  # the first items finish last
        return item + offsets["value"], os.getpid(), torch.get_num_threads()

    results = list(ordered_map(slow_then_fast, range(6), workers=2))
    assert [value for value, _, _ in results] == [100, 101, 102, 103, 104, 105]
    pids = {pid for _, pid, _ in results}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {threads for _, _, threads in results} == {1}


def test_a_worker_error_is_raised_at_its_item() -> None:
    def fails_on_three(item: int) -> int:
        if item == 3:
            raise ValueError("item three")
        return item

    results = ordered_map(fails_on_three, range(8), workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item three"):
        next(results)


def test_workers_die_with_their_parent_after_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, time
        from supernet.parallel import ordered_map

        def work(item):
            if item >= 2:
                time.sleep(120)
            return os.getpid()

        for pid in ordered_map(work, range(6), workers=2):
            print(pid, flush=True)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = {int(parent.stdout.readline()) for _ in range(2)}
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _running(pid)}
        time.sleep(0.05)
    assert not alive, f"workers {alive} outlived their parent"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def test_the_oracle_over_workers_scores_as_in_one_process() -> None:
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=3, in_channels=1, w_bits=(2, 4, 8), a_bits=(2, 4, 8)
    )
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(64, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (64,), generator=generator)
    init_quantizers(supernet, images)
    configs = list(supernet.space.sample(np.random.default_rng(0), 6))
    configs.insert(3, configs[1])  # a repeat is measured once
    ticks: list[int] = []
    parallel = SupernetOracle(
        supernet, images, labels, images[:32], batch_size=16, workers=2, progress=ticks.append
    )
    serial = SupernetOracle(supernet, images, labels, images[:32], batch_size=16)
    assert np.array_equal(parallel.evaluate(configs), serial.evaluate(configs))
    assert ticks == list(range(1, 8))
    streamed = list(parallel.measure_in_order(configs[:3]))
    assert [accuracy for accuracy, _ in streamed] == list(serial.evaluate(configs[:3]))
    assert all(seconds > 0 for _, seconds in streamed)
    with pytest.raises(ValueError, match="workers"):
        SupernetOracle(supernet, images, labels, images, workers=0)
