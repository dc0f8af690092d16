"""Supernet training: the sandwich step, schedules, resume, divergence, configs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eqsearch.errors import InputError
from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.files.checkpoint import load_checkpoint
from supernet.quantizers.lsq import weight_key
from supernet.training.config import TrainConfig
from supernet.training.divergence import TrainingDiverged
from supernet.training.loop import train_supernet
from supernet.training.sandwich import draw_sandwich, open_bit_widths, sandwich_step

TINY = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    epochs=2,
    batch_size=128,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=200,
    bn_images=200,
    quant_init_images=64,
    seed=3,
)


def test_train_config_validation_and_json(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    TINY.to_json(path)
    assert TrainConfig.from_json(path) == TINY
    with pytest.raises(ValueError, match="schedule must be one of"):
        replace(TINY, schedule="annealed")
    with pytest.raises(ValueError, match="gpg_weight"):
        replace(TINY, gpg_weight=1.5)
    with pytest.raises(ValueError, match="unknown model"):
        replace(TINY, model="vgg")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epochs": 3, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="w_bits"):
        replace(TINY, w_bits=(1, 2))


def test_the_same_config_in_yaml_equals_the_json_one(tmp_path: Path) -> None:
    json_path = tmp_path / "train.json"
    TINY.to_json(json_path)
    yaml_path = tmp_path / "train.yaml"
    yaml_path.write_text(
        "model: tiny_convnet\ndataset: digits\nepochs: 2\nbatch_size: 128\nseed: 3\n"
        "holdout: 200\nbn_images: 200\nquant_init_images: 64\nlr: 1e-3\n"
        "w_bits: [2, 4, 8]\na_bits: [2, 4, 8]\n"
    )
    assert TrainConfig.from_file(yaml_path) == TrainConfig.from_file(json_path) == TINY
    dumped = tmp_path / "dumped.yml"
    dumped.write_text(yaml.safe_dump(replace(TINY, lr=2.5e-5, grad_clip=None).to_dict()))
    assert TrainConfig.from_file(dumped) == replace(TINY, lr=2.5e-5, grad_clip=None)
    yaml_path.write_text("model: tiny_convnet\nepochs: 2\nepochs: 3\n")
    with pytest.raises(InputError, match="'epochs' appears twice"):
        TrainConfig.from_file(yaml_path)
    yaml_path.write_text("- epochs\n")
    with pytest.raises(InputError, match="must hold a JSON object or a YAML mapping"):
        TrainConfig.from_file(yaml_path)


def test_sandwich_draws() -> None:
    supernet = build_supernet("tiny_convnet", num_classes=3)
    space = supernet.space
    rng = np.random.default_rng(0)
    high, _random, low = draw_sandwich(space, rng, space.w_bits)
    assert [c.w_bits for c in high] == [8, 8, 8, 8]
    assert [c.a_bits for c in low] == [8, 2, 2, 8]
    assert high.uniform_form is not None
    per_layer = draw_sandwich(space, rng, (6, 7, 8), forms="per_layer", random_subnets=3)
    assert len(per_layer) == 5
    assert all(c.w_bits in (6, 7, 8) for config in per_layer for c in config)
    assert [c.w_bits for c in per_layer[-1]] == [8, 6, 6, 8]


def test_one_sandwich_step_updates_used_step_sizes_only() -> None:
    torch.manual_seed(0)
    supernet = build_supernet("tiny_convnet", num_classes=3, in_channels=1)
    images = torch.randn(16, 1, 8, 8)
    labels = torch.randint(0, 3, (16,))
    init_quantizers(supernet, images)
    supernet.train()
    space = supernet.space
    subnets = draw_sandwich(space, np.random.default_rng(4), space.w_bits, random_subnets=1)
    used = set()
    for config in subnets:
        for layer, choice in zip(supernet.elastic_layers().values(), config, strict=True):
            used |= {id(p) for p in layer.quantizer.parameters_for(choice)}
    weights = [layer.weight for layer in supernet.elastic_layers().values()]
    # eps≈0 makes Adam's first update lr·sign(grad): every parameter with a gradient moves
    optimizer = torch.optim.Adam(supernet.parameters(), lr=1e-2, eps=1e-30)
    before = {name: p.detach().clone() for name, p in supernet.named_parameters()}
    optimizer.zero_grad(set_to_none=True)
    losses = sandwich_step(supernet, images, labels, subnets, TINY, weights)
    assert set(losses) == {"high", "random0", "low", "wdr_skew", "wdr_kurtosis"}
    optimizer.step()
    moved_steps, untouched = 0, 0
    for name, parameter in supernet.named_parameters():
        moved = not torch.equal(before[name], parameter.detach())
        if ".quantizer." in name:
            if id(parameter) not in used:
                assert parameter.grad is None and not moved, name
                untouched += 1
            elif "log_steps" in name:
                # every used step size moves; an offset's LSQ+ gradient comes only from
                # clipped values, so an 8-bit offset may legitimately receive zero
                assert moved, name
                moved_steps += 1
            else:
                assert parameter.grad is not None, name
        elif name.endswith("weight") and parameter.ndim > 1:
            assert moved, name
    assert moved_steps >= 6 and untouched > 50


def test_progressive_schedule_opens_bits_in_order() -> None:
    config = replace(TINY, schedule="progressive", epochs=6, w_bits=(2, 3, 4), a_bits=(2, 3, 4))
    space = build_supernet("tiny_convnet", num_classes=3, w_bits=(2, 3, 4), a_bits=(2, 3, 4)).space
    opened = [open_bit_widths(config, space, epoch) for epoch in range(6)]
    assert opened == [(4,), (4,), (3, 4), (3, 4), (2, 3, 4), (2, 3, 4)]
    assert open_bit_widths(TINY, space, 0) == (2, 3, 4)


def test_progressive_training_inherits_doubled_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    config = replace(TINY, schedule="progressive", epochs=3, w_bits=(2, 3, 4), a_bits=(2, 3, 4))
    observed: list[tuple[int, int, float, float]] = []
    from supernet.quantizers.lsq import LsqQuantizer

    original = LsqQuantizer.inherit

    def spy(self: LsqQuantizer, from_bits: int, to_bits: int) -> None:
        original(self, from_bits, to_bits)
        granularity = QuantForm().w_granularity
        if weight_key(from_bits, granularity, True) in self.weight_log_steps:
            higher = float(self.weight_step(from_bits, granularity, True)[0])
            lower = float(self.weight_step(to_bits, granularity, True)[0])
            observed.append((from_bits, to_bits, higher, lower))

    monkeypatch.setattr(LsqQuantizer, "inherit", spy)
    result = train_supernet(config, None, progress=False)
    pairs = [(f, t) for f, t, _, _ in observed]
    n_elastic = len(result.supernet.space.elastic_indices)
    assert pairs == [(4, 3)] * n_elastic + [(3, 2)] * n_elastic
    for _, _, higher, lower in observed:
        assert lower == pytest.approx(2 * higher, rel=1e-5)
    supernet_entries = [entry for entry in result.history if entry["phase"] == "supernet"]
    assert [entry["open_bits"] for entry in supernet_entries] == [[4], [3, 4], [2, 3, 4]]


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight = train_supernet(TINY, tmp_path / "straight", progress=False)
    interrupted = train_supernet(TINY, tmp_path / "partial", progress=False, stop_after=1)
    assert [h["epoch"] for h in interrupted.history] == [0, 1]
    assert load_checkpoint(tmp_path / "partial" / "supernet.pt")["epoch"] == 1
    resumed = train_supernet(TINY, tmp_path / "partial", resume=True, progress=False)
    for key, value in straight.supernet.state_dict().items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key
    assert [h.get("loss_low") for h in resumed.history] == [
        h.get("loss_low") for h in straight.history
    ]
    lines = (tmp_path / "partial" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]


def test_existing_checkpoint_is_not_overwritten(tmp_path: Path) -> None:
    train_supernet(replace(TINY, epochs=1), tmp_path, progress=False)
    stamp = (tmp_path / "supernet.pt").stat().st_mtime_ns
    with pytest.raises(ValueError, match="exists; pass --resume"):
        train_supernet(replace(TINY, epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="stored settings"):
        train_supernet(replace(TINY, epochs=1, lr=0.5), tmp_path, resume=True, progress=False)
    assert (tmp_path / "supernet.pt").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="nothing to resume"):
        train_supernet(TINY, tmp_path / "empty", resume=True, progress=False)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    good = train_supernet(replace(TINY, epochs=1), tmp_path, progress=False)
    saved = load_checkpoint(tmp_path / "supernet.pt")
    assert saved["epoch"] == 1
    # a resumed run whose learning rate explodes: continue with a poisoned optimizer state
    payload = torch.load(tmp_path / "supernet.pt", weights_only=True)
    payload["train_config"]["epochs"] = 2
    for group in payload["optimizer"]["param_groups"]:
        group["lr"] = 1e15
    payload["scheduler"]["base_lrs"] = [1e15] * len(payload["scheduler"]["base_lrs"])
    torch.save(payload, tmp_path / "supernet.pt")
    before = (tmp_path / "supernet.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"became .* the checkpoint of epoch 1 is kept"):
        train_supernet(replace(TINY, epochs=2), tmp_path, resume=True, progress=False)
    assert (tmp_path / "supernet.pt").read_bytes() == before
    assert good.history[0]["acc_largest"] > 0


def test_resume_refuses_a_checkpoint_with_non_finite_weights(tmp_path: Path) -> None:
    train_supernet(replace(TINY, epochs=1), tmp_path, progress=False)
    payload = torch.load(tmp_path / "supernet.pt", weights_only=True)
    payload["train_config"]["epochs"] = 2
    name = next(key for key in payload["state_dict"] if key.endswith(".weight"))
    payload["state_dict"][name] = payload["state_dict"][name] * float("nan")
    torch.save(payload, tmp_path / "supernet.pt")
    with pytest.raises(ValueError, match=r"holds non-finite weights"):
        train_supernet(replace(TINY, epochs=2), tmp_path, resume=True, progress=False)


class _Killed(BaseException):
    """Stands in for kill -9: nothing after it runs."""


@pytest.mark.parametrize("killed_after_fp_epoch", [1, 2])
def test_a_run_killed_before_its_first_supernet_epoch_resumes_from_fp_pt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_after_fp_epoch: int
) -> None:
    config = replace(TINY, fp_epochs=2, epochs=1)
    straight = train_supernet(config, tmp_path / "straight", progress=False)
    import supernet.training.loop as train_module

    real_save = train_module.save_supernet

    def save_then_die(path: Path, supernet: object, **fields: object) -> None:
        real_save(path, supernet, **fields)  # type: ignore[arg-type]
        if fields.get("kind") == "fp" and fields.get("fp_epoch") == killed_after_fp_epoch:
            raise _Killed

    monkeypatch.setattr(train_module, "save_supernet", save_then_die)
    with pytest.raises(_Killed):
        train_supernet(config, tmp_path / "partial", progress=False)
    monkeypatch.undo()
    partial = tmp_path / "partial"
    assert not (partial / "supernet.pt").exists()
    stored = load_checkpoint(partial / "fp.pt")
    assert stored["complete"] is (killed_after_fp_epoch == 2)
    assert ("optimizer" in stored) is (killed_after_fp_epoch == 1)
    before = (partial / "fp.pt").read_bytes()
    with pytest.raises(ValueError, match=r"fp.pt holds the pretraining .* pass --resume"):
        train_supernet(config, partial, progress=False)
    assert (partial / "fp.pt").read_bytes() == before  # a plain rerun does not redo it
    with pytest.raises(ValueError, match="stored settings"):
        train_supernet(replace(config, lr=0.5), partial, resume=True, progress=False)
    resumed = train_supernet(config, partial, resume=True, progress=False)
    for key, value in straight.supernet.state_dict().items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key
    assert [h["phase"] for h in resumed.history] == ["fp", "fp", "start", "supernet"]
    assert [h.get("acc_fp") for h in resumed.history] == [h.get("acc_fp") for h in straight.history]
    assert load_checkpoint(partial / "fp.pt")["complete"] is True


def test_init_refuses_an_unfinished_pretraining(tmp_path: Path, monkeypatch) -> None:
    import supernet.training.loop as train_module

    real_save = train_module.save_supernet

    def save_then_die(path: Path, supernet: object, **fields: object) -> None:
        real_save(path, supernet, **fields)  # type: ignore[arg-type]
        raise _Killed

    monkeypatch.setattr(train_module, "save_supernet", save_then_die)
    with pytest.raises(_Killed):
        train_supernet(replace(TINY, fp_epochs=2), tmp_path / "a", progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"unfinished pretraining \(epoch 1 of 2\)"):
        train_supernet(replace(TINY, init=str(tmp_path / "a" / "fp.pt")), None, progress=False)
