"""Multi-process training: two CPU ranks (gloo) end with identical weights."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from supernet.checkpoint import load_checkpoint
from supernet.data import build_data
from supernet.train import TrainConfig, train_supernet

CONFIG = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    epochs=1,
    batch_size=64,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=100,
    bn_images=100,
    quant_init_images=64,
    seed=11,
)


def _rank_main(rank: int, world_size: int, folder: str, model: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=world_size,
    )
    try:
        out = Path(folder) / "run"
        result = train_supernet(replace(CONFIG, model=model), out, progress=False)
        torch.save(result.supernet.state_dict(), Path(folder) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_convnet", "oqa_mbv3_tiny"])
def test_two_ranks_end_with_identical_weights(model: str, tmp_path: Path) -> None:
    # the joint model's sandwich runs other blocks and widths at every step: the ranks must
    # draw the same subnets, or their gradients would not line up
    mp.spawn(_rank_main, args=(2, str(tmp_path), model), nprocs=2, join=True)
    first = torch.load(tmp_path / "rank0.pt", weights_only=True)
    second = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    saved = load_checkpoint(tmp_path / "run" / "supernet.pt")
    for key, value in saved["state_dict"].items():
        assert torch.equal(value, first[key]), key
    # each rank saw half of the epoch (padded to equal halves)
    n_train = len(build_data(CONFIG.data_spec()).train)
    assert saved["scheduler"]["last_epoch"] == math.ceil(math.ceil(n_train / 2) / 64)


@pytest.mark.slow
def test_torchrun_launches_the_cli(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "eqsearch",
        "train",
        "--model",
        "tiny_convnet",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--w-bits",
        "2,8",
        "--a-bits",
        "2,8",
        "--holdout",
        "100",
        "--bn-images",
        "100",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    payload = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert payload["epoch"] == 1
    assert completed.stdout.count("checkpoint:") == 1  # only rank 0 reports
