"""The generators a checkpoint keeps: the CPU's and, on CUDA (faked here), the GPU's."""

from __future__ import annotations

import pytest
import torch

from supernet.training.rng_state import restore_training_rng, training_rng_state


@pytest.fixture
def fake_gpu_generator(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object, object]]:
    """torch.cuda's generator functions over a dict of fake per-device states."""
    calls: list[tuple[str, object, object]] = []
    states = {
        0: torch.tensor([0, 0], dtype=torch.uint8),
        1: torch.tensor([1, 9], dtype=torch.uint8),
    }

    def get(device: torch.device) -> torch.Tensor:
        calls.append(("get", device, None))
        return states[device.index].clone()

    def put(state: torch.Tensor, device: torch.device) -> None:
        calls.append(("set", device, state.tolist()))
        states[device.index] = state.clone()

    monkeypatch.setattr(torch.cuda, "get_rng_state", get)
    monkeypatch.setattr(torch.cuda, "set_rng_state", put)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    return calls


def test_a_gpu_run_keeps_its_own_gpus_generator(fake_gpu_generator) -> None:
    fields = training_rng_state(torch.device("cuda", 1))
    assert fake_gpu_generator == [("get", torch.device("cuda", 1), None)]
    assert fields["cuda_rng"].tolist() == [1, 9]
    assert torch.equal(fields["torch_rng"], torch.get_rng_state())
    # "cuda" alone is the current device
    assert training_rng_state(torch.device("cuda"))["cuda_rng"].tolist() == [1, 9]
    assert set(training_rng_state(torch.device("cpu"))) == {"torch_rng"}


def test_a_resume_restores_both_generators_on_any_number_of_gpus(fake_gpu_generator) -> None:
    torch.manual_seed(5)
    fields = training_rng_state(torch.device("cuda", 1))
    expected = torch.rand(4)
    torch.manual_seed(99)
    # resumed by a process on GPU 0 (another GPU count, another local rank)
    restore_training_rng(fields, torch.device("cuda", 0))
    assert torch.equal(torch.rand(4), expected)
    assert fake_gpu_generator[-1] == ("set", torch.device("cuda", 0), [1, 9])
    # on the CPU the GPU's state is not used; a CPU run's checkpoint has none to restore
    fake_gpu_generator.clear()
    restore_training_rng(fields, torch.device("cpu"))
    restore_training_rng({"torch_rng": fields["torch_rng"]}, torch.device("cuda", 0))
    assert fake_gpu_generator == []


@pytest.mark.slow
def test_training_saves_the_generators_and_a_resume_restores_them(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supernet.training.loop as train_module
    import supernet.training.pretrain as pretrain_module
    from supernet.files.checkpoint import load_checkpoint
    from supernet.training.config import TrainConfig
    from supernet.training.loop import train_supernet

    config = TrainConfig(
        model="tiny_convnet",
        dataset="digits",
        epochs=2,
        fp_epochs=1,
        batch_size=256,
        w_bits=(2, 8),
        a_bits=(2, 8),
        holdout=100,
        bn_images=100,
        quant_init_images=64,
    )
    gpu_state = torch.tensor([4, 2], dtype=torch.uint8)  # what a GPU run would add
    for module in (train_module, pretrain_module):  # supernet.pt and fp.pt
        monkeypatch.setattr(
            module,
            "training_rng_state",
            lambda device: {**training_rng_state(device), "cuda_rng": gpu_state},
        )
    restored: list[tuple[list[int], torch.device]] = []

    def restore(stored: dict, device: torch.device) -> None:
        restored.append((stored["cuda_rng"].tolist(), device))
        restore_training_rng(stored, device)

    monkeypatch.setattr(train_module, "restore_training_rng", restore)
    train_supernet(config, tmp_path, progress=False, stop_after=1)
    for name in ("fp.pt", "supernet.pt"):
        assert load_checkpoint(tmp_path / name)["cuda_rng"].tolist() == [4, 2], name
    train_supernet(config, tmp_path, resume=True, progress=False)
    assert restored == [([4, 2], torch.device("cpu"))]
