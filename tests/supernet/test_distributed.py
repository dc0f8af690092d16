"""Multi-process training: two CPU ranks (gloo) end with identical weights and share the
scoring; every tensor a collective gets lives on the training device (``meta`` stands in for a
GPU where no GPU is: a recording fake of the collective sees its device)."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from supernet.data.datasets import build_data
from supernet.evaluation.oracle import subnet_accuracy
from supernet.files.checkpoint import load_checkpoint, load_supernet
from supernet.training.config import TrainConfig
from supernet.training.distributed import (
    Distributed,
    average_gradients,
    broadcast_state,
    scoring_share,
    shared_accuracy,
)
from supernet.training.divergence import TrainingDiverged, check_finite
from supernet.training.loop import train_supernet

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
        "--w-choices",
        "2,8",
        "--a-choices",
        "2,8",
        "--holdout",
        "100",
        "--calib-images",
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


class _Sent(Exception):
    """Raised by the fake collective after recording a tensor it cannot reduce (on meta)."""


@pytest.fixture
def collectives(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, torch.device]]:
    """Fake all_reduce/broadcast that record (name, device); CPU tensors are left as they
    are (one rank's view of a reduction with itself), others stop the caller."""
    sent: list[tuple[str, torch.device]] = []

    def record(name: str) -> object:
        def collective(tensor: torch.Tensor, *args: object, **kwargs: object) -> None:
            sent.append((name, tensor.device))
            if tensor.device.type != "cpu":
                raise _Sent

        return collective

    monkeypatch.setattr(torch.distributed, "all_reduce", record("all_reduce"))
    monkeypatch.setattr(torch.distributed, "broadcast", record("broadcast"))
    return sent


GPU = torch.device("meta")


def test_the_finiteness_flag_goes_to_all_reduce_on_the_training_device(
    collectives: list[tuple[str, torch.device]],
) -> None:
    losses = {"high": torch.tensor(1.0, device=GPU), "low": torch.tensor(2.0, device=GPU)}
    with pytest.raises(_Sent):
        check_finite(losses, 0, 0, Distributed(0, 2, GPU))
    assert collectives == [("all_reduce", GPU)]
    # on the CPU: a rank whose peer diverged stops too (the reduced flag reads 0 there)
    cpu = Distributed(0, 2, torch.device("cpu"))
    check_finite({"high": torch.tensor(1.0)}, 0, 0, cpu)

    def peer_diverged(tensor: torch.Tensor, *args: object, **kwargs: object) -> None:
        tensor.zero_()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.distributed, "all_reduce", peer_diverged)
        with pytest.raises(TrainingDiverged, match="loss on another rank became nan"):
            check_finite({"high": torch.tensor(1.0)}, 0, 3, cpu)


def test_gradients_weights_and_scores_go_to_collectives_on_the_training_device(
    collectives: list[tuple[str, torch.device]],
) -> None:
    dist = Distributed(1, 2, GPU)
    layer = torch.nn.Linear(3, 2).to(GPU)
    for parameter in layer.parameters():
        parameter.grad = torch.ones_like(parameter)
    with pytest.raises(_Sent):
        average_gradients(list(layer.parameters()), dist)
    with pytest.raises(_Sent):
        broadcast_state(layer)
    with pytest.raises(_Sent):
        shared_accuracy(lambda start, stop: 50.0, 1000, dist, batch_size=500)
    assert collectives == [("all_reduce", GPU), ("broadcast", GPU), ("all_reduce", GPU)]


def test_the_scoring_shares_are_whole_batches_covering_every_image_once() -> None:
    for count, batch, world in [(1200, 500, 2), (1200, 500, 4), (100, 500, 2), (2000, 64, 3)]:
        shares = [scoring_share(count, batch, Distributed(r, world)) for r in range(world)]
        assert shares[0][0] == 0 and shares[-1][1] == count
        for (_, stop), (start, _) in itertools.pairwise(shares):
            assert stop == start
        assert all(start % batch == 0 for start, _ in shares)
    assert [scoring_share(1200, 500, Distributed(r, 2)) for r in range(2)] == [
        (0, 500),
        (500, 1200),
    ]


SCORING = replace(CONFIG, fp_epochs=1, holdout=600, w_bits=(2, 8), a_bits=(2, 8), bn_images=100)


def _scoring_rank(rank: int, world_size: int, folder: str) -> None:
    """Train with ``SCORING`` on one of ``world_size`` ranks, recording the sizes it scores."""
    import json

    import supernet.training.scoring as train_module

    torch.set_num_threads(1)
    scored: list[int] = []
    real = train_module.measure_accuracy

    def counting(supernet: object, config: object, scoring: Any, *args, **kwargs):
        scored.append(len(scoring))
        return real(supernet, config, scoring, *args, **kwargs)  # type: ignore[arg-type]

    train_module.measure_accuracy = counting  # type: ignore[assignment]
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        result = train_supernet(SCORING, Path(folder) / "run", progress=False)
        record = {"scored": scored, "history": result.history}
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_epoch_scoring_and_get_the_one_process_score(tmp_path: Path) -> None:
    import json

    mp.spawn(_scoring_rank, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # 600 held-out images in batches of 500: rank 0 scores the first batch, rank 1 the rest,
    # for the FP model and the largest and smallest subnets (before the supernet epoch and
    # after it)
    assert ranks[0]["scored"] == [500] * 6
    assert ranks[1]["scored"] == [100] * 6
    # every rank logs the same scores (its losses are its own shard's)
    for key in ("acc_fp", "acc_largest", "acc_smallest"):
        values = [[entry.get(key) for entry in rank["history"]] for rank in ranks]
        assert values[0] == values[1], key
    fp_entry, start_entry, entry = ranks[0]["history"]
    assert start_entry["phase"] == "start"
    assert start_entry["acc_fp"] == fp_entry["acc_fp"]  # the pretrained weights, unchanged
    data = build_data(SCORING.data_spec(), seed=SCORING.seed)
    images, labels = data.holdout_tensors()
    calibration = data.calibration_images(SCORING.bn_images)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp, _ = load_supernet(tmp_path / "run" / "fp.pt")
        assert fp_entry["acc_fp"] == subnet_accuracy(fp, None, images, labels, calibration)
        supernet, _ = load_supernet(tmp_path / "run" / "supernet.pt")
        space = supernet.space
        form = space.forms[0]
        for key, config in [
            ("acc_largest", space.uniform(8, 8, form, arch="largest")),
            ("acc_smallest", space.uniform(2, 2, form, arch="smallest")),
        ]:
            assert entry[key] == subnet_accuracy(supernet, config, images, labels, calibration)
    finally:
        torch.set_num_threads(threads)
