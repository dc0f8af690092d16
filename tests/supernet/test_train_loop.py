"""Mixed-precision training: --amp bf16|fp16 (a gradient scaler for fp16) and --compile."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from eqsearch.app.cli import main
from supernet import runtime
from supernet.networks.layers import ElasticQuantConv2d
from supernet.quantizers import level_conv
from supernet.training.amp import autocast, gradient_scaler
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet

TINY = TrainConfig(
    model="tiny_convnet",
    dataset="digits",
    epochs=1,
    batch_size=512,
    w_bits=(2, 4, 8),
    a_bits=(2, 4, 8),
    holdout=200,
    bn_images=200,
    quant_init_images=64,
    seed=3,
)


def test_amp_and_compile_are_validated() -> None:
    with pytest.raises(ValueError, match=r"amp must be one of none, bf16, fp16; got 'int8'"):
        replace(TINY, amp="int8")
    with pytest.raises(ValueError, match="compile must be true or false"):
        replace(TINY, compile="yes")
    assert TrainConfig.from_dict({**TINY.to_dict(), "amp": "bf16"}).amp == "bf16"
    cpu = torch.device("cpu")
    assert gradient_scaler(cpu, "bf16") is None and gradient_scaler(cpu, "none") is None
    assert isinstance(gradient_scaler(cpu, "fp16"), torch.amp.GradScaler)
    with autocast(cpu, "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    with autocast(cpu, "none"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.fixture(scope="module")
def float32_run() -> dict[str, Any]:
    """The last log entry of TINY trained in float32."""
    return train_supernet(replace(TINY, device="cpu"), None, progress=False).history[-1]


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_under_amp(
    monkeypatch: pytest.MonkeyPatch, amp: str, float32_run: dict[str, Any]
) -> None:
    steps: list[torch.dtype | None] = []
    scaled: list[float] = []
    levels: list[int] = []
    forward = ElasticQuantConv2d.forward
    level_conv2d = level_conv.level_conv2d

    def spy(self: ElasticQuantConv2d, x: torch.Tensor) -> Any:
        if torch.is_grad_enabled():
            enabled = torch.is_autocast_enabled("cpu")
            steps.append(torch.get_autocast_dtype("cpu") if enabled else None)
        return forward(self, x)

    monkeypatch.setattr(ElasticQuantConv2d, "forward", spy)
    monkeypatch.setattr(level_conv, "level_conv2d", lambda *a: levels.append(1) or level_conv2d(*a))
    step = torch.amp.GradScaler.step

    def scaler_step(self: torch.amp.GradScaler, *args: Any, **kwargs: Any) -> Any:
        scaled.append(self.get_scale())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", scaler_step)
    result = train_supernet(replace(TINY, amp=amp, device="cpu"), None, progress=False)
    entry = result.history[-1]
    for key in ("loss_high", "loss_low", "loss_random"):
        # four steps from the same start: the losses differ by the narrower rounding only
        assert entry[key] == pytest.approx(float32_run[key], rel=0.05), key
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert steps and set(steps) == {dtype}  # every training forward's convolution under autocast
    # bfloat16: the fused convolutions on the levels; float16: in float32
    assert bool(levels) == (amp == "bf16")
    steps_per_epoch = math.ceil(len(result.data.train) / 512)
    assert len(scaled) == (steps_per_epoch if amp == "fp16" else 0)
    assert all(scale >= 1.0 for scale in scaled)


def test_the_cli_sets_amp_and_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TrainConfig] = []

    def fake_train(config: TrainConfig, out: Any, **kwargs: Any) -> Any:
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr("supernet.training.loop.train_supernet", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "a"), "--amp", "bf16", "--compile"])
    assert (seen[0].amp, seen[0].compile) == ("bf16", True)
    assert main(["train", "--out", str(tmp_path / "b"), "--amp", "fp8"]) == 2
    assert not (tmp_path / "b").exists()


def test_compile_turns_the_compiled_pieces_on(monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[bool] = []
    original = runtime.compiled_quantizers

    def record(enabled: bool = True) -> Any:
        states.append(enabled)
        return original(enabled)

    monkeypatch.setattr("supernet.training.loop.compiled_quantizers", record)
    monkeypatch.setattr(
        "supernet.training.loop._train_supernet", lambda *a, **k: runtime._compile_enabled
    )
    assert train_supernet(replace(TINY, compile=True), None, progress=False) is True
    assert train_supernet(TINY, None, progress=False) is False
    assert states == [True, False]


@pytest.mark.slow
def test_the_gradient_scaler_is_checkpointed_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = replace(TINY, amp="fp16", device="cpu")
    train_supernet(config, tmp_path, progress=False)
    stored = torch.load(tmp_path / "supernet.pt", weights_only=True)
    assert stored["grad_scaler"]["scale"] == torch.amp.GradScaler("cpu").get_scale()
    stored["train_config"]["epochs"] = 2  # the run continued for one more epoch
    torch.save(stored, tmp_path / "supernet.pt")
    loaded: list[dict[str, Any]] = []
    load = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(
        torch.amp.GradScaler,
        "load_state_dict",
        lambda self, state: loaded.append(state) or load(self, state),
    )
    train_supernet(replace(config, epochs=2), tmp_path, resume=True, progress=False)
    assert loaded == [stored["grad_scaler"]]
