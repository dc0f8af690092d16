"""Folder datasets stream: no split held as one tensor; loaders, workers, copies to a GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eqsearch.app.cli import main
from eqsearch.space import QuantForm
from supernet import build_supernet, init_quantizers
from supernet.data.datasets import build_data
from supernet.data.images import StreamedImages, TensorImages, on_device
from supernet.data.spec import DataSpec
from supernet.evaluation.evaluate import EvaluationSet, evaluation_set
from supernet.evaluation.oracle import SupernetOracle, measure_accuracy, subnet_accuracy
from supernet.files.checkpoint import save_supernet

SIZE = 16
BATCH = 8
VAL_IMAGES = 60
FORM = QuantForm("channel", True, True)


def _write_folder(root: Path, train: int = 24, val: int = VAL_IMAGES) -> Path:
    """Two classes of noisy colour squares, PNG files under train/ and val/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label, colour in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count // 2):
                pixels = np.clip(rng.normal(colour, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("folder"))


def _spec(root: Path, **fields: Any) -> DataSpec:
    values: dict[str, Any] = {
        "name": "imagefolder",
        "root": str(root),
        "image_size": SIZE,
        "batch_size": 6,
        "eval_batch_size": BATCH,
        "holdout": 10,
        "workers": 0,
    }
    values.update(fields)
    return DataSpec(**values)


@pytest.fixture(scope="module")
def checkpoint(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_convnet supernet on the folder, quantizers initialised, untrained."""
    spec = _spec(folder)
    data = build_data(spec)
    torch.manual_seed(0)
    supernet = build_supernet(
        "tiny_convnet", num_classes=2, in_channels=3, image_size=SIZE, w_bits=(4, 8), a_bits=(4, 8)
    )
    init_quantizers(supernet, data.calibration_images(16))
    path = tmp_path_factory.mktemp("run") / "supernet.pt"
    save_supernet(path, supernet, data=spec.to_dict(), train_config={"bn_images": 20})
    return path


@pytest.fixture(scope="module")
def folder_supernet(folder: Path) -> tuple[Any, Any]:
    """The folder's data (streamed) and a tiny_convnet supernet on it, quantizers set."""
    data = build_data(_spec(folder))
    torch.manual_seed(1)
    supernet = build_supernet(
        "tiny_convnet", num_classes=2, in_channels=3, image_size=SIZE, w_bits=(4, 8), a_bits=(4, 8)
    )
    init_quantizers(supernet, data.calibration_images(16))
    return data, supernet


class _LargestImageTensor:
    """Records the most images any ``torch.cat``/``torch.stack`` result held (4-d results)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.largest = 0
        self.calls = 0
        for name in ("cat", "stack"):
            monkeypatch.setattr(torch, name, self._spy(getattr(torch, name)))

    def _spy(self, original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = original(*args, **kwargs)
            if out.dim() == 4:
                self.calls += 1
                self.largest = max(self.largest, out.shape[0])
            return out

        return spy


def test_eval_of_the_test_split_never_builds_a_tensor_of_more_than_a_batch(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spy = _LargestImageTensor(monkeypatch)
    code = main(
        [
            *("eval", "--supernet", str(checkpoint), "--uniform", "4/4", "--form", str(FORM)),
            *("--split", "test", "--no-progress"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert spy.calls >= (VAL_IMAGES + 20) // BATCH  # every batch was collated by the spy
    assert spy.largest == BATCH  # and none of the 60 test or 20 calibration images more


def test_export_checks_onnx_runtime_batch_by_batch(
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spy = _LargestImageTensor(monkeypatch)
    out = tmp_path / "model.onnx"
    code = main(
        [
            *("export", "--supernet", str(checkpoint), "--uniform", "8/8", "--output", str(out)),
            *("--split", "test", "--val-images", "40", "--no-progress"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert out.is_file() and "40 (test split)" in capsys.readouterr().out
    assert 0 < spy.largest <= BATCH


def test_streamed_scores_equal_the_scores_on_the_same_images_as_tensors(
    folder_supernet: tuple[Any, Any],
) -> None:
    data, supernet = folder_supernet
    scoring, calibration = data.scoring("test"), data.calibration_source(20)
    assert isinstance(scoring, StreamedImages) and isinstance(calibration, StreamedImages)
    images, labels = data.test_tensors()
    configs = [supernet.space.uniform(bits, bits, FORM) for bits in (4, 8)]
    for config in (None, *configs):
        in_memory = subnet_accuracy(
            supernet, config, images, labels, data.calibration_images(20), batch_size=BATCH
        )
        assert measure_accuracy(supernet, config, scoring, calibration) == in_memory
    oracle = SupernetOracle.from_sources(supernet, scoring, calibration, workers=2)
    expected = [measure_accuracy(supernet, c, scoring, calibration) for c in configs]
    assert oracle.evaluate(configs).tolist() == expected


def test_each_image_tree_is_listed_once(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets.folder import DatasetFolder

    listed: list[str] = []
    original = DatasetFolder.make_dataset

    def counting(directory: str, *args: Any, **kwargs: Any) -> Any:
        listed.append(Path(directory).name)
        return original(directory, *args, **kwargs)

    monkeypatch.setattr(DatasetFolder, "make_dataset", staticmethod(counting))
    data = build_data(_spec(folder))
    assert sorted(listed) == ["train", "val"]
    # the augmented and the plain view read the same files
    assert len(data.train) == len(data.train_plain) == 24


def test_one_loader_serves_every_epoch_and_augmentation_does_not_depend_on_workers(
    folder: Path,
) -> None:
    serial = build_data(_spec(folder, workers=0), seed=3)
    parallel = build_data(_spec(folder, workers=2), seed=3)
    for epoch in (0, 1):
        first = list(serial.train.batches(epoch))
        second = list(parallel.train.batches(epoch))
        assert len(first) == len(second) == 4
        for (x1, y1), (x2, y2) in zip(first, second, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other_epoch = torch.cat([x for x, _ in serial.train.batches(2)])
    assert not torch.equal(other_epoch, torch.cat([x for x, _ in first]))
    loader = parallel.train._get_loader()  # type: ignore[attr-defined]
    list(parallel.train.batches(5))
    assert parallel.train._get_loader() is loader  # type: ignore[attr-defined]
    assert loader.persistent_workers and loader.num_workers == 2


def test_pinned_batches_for_cuda_and_a_worker_default_from_the_cores(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supernet.parallel
    from supernet.training.config import TrainConfig

    pinned = build_data(_spec(folder, workers=None), pin_memory=True)
    assert pinned.train._get_loader().pin_memory  # type: ignore[attr-defined]
    assert isinstance(pinned.test, StreamedImages) and pinned.test.loader().pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_data(_spec(folder)).test.pin_memory  # type: ignore[attr-defined]
    monkeypatch.setattr(supernet.parallel, "usable_cores", lambda: 32)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert DataSpec().loader_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert DataSpec().loader_workers() == 4
    assert DataSpec(workers=3).loader_workers() == 3
    assert TrainConfig().workers is None and TrainConfig().data_spec().workers is None
    with pytest.raises(ValueError, match="workers"):
        DataSpec(workers=-1)


def test_evaluation_batch_size_follows_the_image_size() -> None:
    assert DataSpec().evaluation_batch_size(1, 28) == 500
    assert DataSpec().evaluation_batch_size(3, 32) == 500
    assert DataSpec().evaluation_batch_size(3, 96) == 500
    assert DataSpec().evaluation_batch_size(3, 224) == 64
    assert DataSpec().evaluation_batch_size(3, 512) == 16
    assert DataSpec(eval_batch_size=64).evaluation_batch_size(3, 32) == 64


def test_val_images_pick_a_fixed_subset_and_calib_images_the_first_calibration_images() -> None:
    data = build_data(DataSpec("digits", holdout=300))
    evaluation = evaluation_set(data, split="test", bn_images=64, val_images=50)
    images, labels = evaluation.scoring.tensors()
    again = evaluation_set(data, split="test", bn_images=64, val_images=50).scoring.tensors()
    assert images.shape == (50, 1, 8, 8) and torch.equal(again[0], images)
    test_images, test_labels = data.test_tensors()
    for image, label in zip(images, labels, strict=True):  # each one an image of the split
        same = (test_images == image).all(dim=(1, 2, 3))
        assert bool((same & (test_labels == label)).any())
    assert len(set(labels.tolist())) > 5  # spread over the split, not its first class
    assert torch.equal(evaluation.calibration_images, data.calibration_images(64))
    # with the holdout split, M is the size of the held-out slice
    holdout = evaluation_set(data, split="holdout", val_images=120).scoring.tensors()[0]
    smaller = build_data(DataSpec("digits", holdout=120)).holdout_tensors()[0]
    assert torch.equal(holdout, smaller)
    assert len(evaluation_set(data, split="test", val_images=10_000).scoring) == len(data.test)


def test_embedded_sources_give_the_scores_of_the_tensor_path() -> None:
    data = build_data(DataSpec("digits", holdout=300))
    torch.manual_seed(0)
    supernet = build_supernet("tiny_convnet", num_classes=10, in_channels=1, w_bits=(2, 4, 8))
    init_quantizers(supernet, data.calibration_images(64))
    assert isinstance(data.holdout, TensorImages)
    images, labels = data.holdout_tensors()
    for bits in (2, 8):
        config = supernet.space.uniform(bits, bits, supernet.space.forms[0])
        sources = measure_accuracy(supernet, config, data.holdout, data.calibration_source(700))
        tensors = subnet_accuracy(supernet, config, images, labels, data.calibration_images(700))
        assert sources == tensors


def test_calib_images_val_images_and_the_hidden_bn_images_alias(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eqsearch.app.cli import build_parser

    parser = build_parser()
    for command in (["eval"], ["export", "--output", "m.onnx"], ["sample"]):
        args = parser.parse_args([*command, "--supernet", "s.pt", "--calib-images", "7"])
        assert args.bn_images == 7 and args.val_images is None
        args = parser.parse_args([*command, "--supernet", "s.pt", "--bn-images", "9"])
        assert args.bn_images == 9
        args = parser.parse_args([*command, "--supernet", "s.pt", "--val-images", "11"])
        assert args.val_images == 11
    for flag in ("--calib-images", "--bn-images"):
        assert parser.parse_args(["train", "--out", "r", flag, "5"]).bn_images == 5
    for command in (["train"], ["eval"], ["export"], ["sample"], ["nsga"], ["strategy", "ilp"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--help"])
        text = capsys.readouterr().out
        assert "--calib-images" in text and "--bn-images" not in text
        assert ("--val-images" in text) == (command != ["train"])  # train's M is --holdout


class _CudaCopies:
    """The oracle sees a CUDA supernet; its copies to the "GPU" land on the CPU."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, free: int) -> None:
        import supernet.evaluation.oracle

        self.copied: list[int] = []
        monkeypatch.setattr(
            supernet.evaluation.oracle, "_device_of", lambda _: torch.device("cuda")
        )
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 2 * free))
        monkeypatch.setattr(supernet.evaluation.oracle, "on_device", self._copy)

    def _copy(self, source: Any, device: torch.device) -> TensorImages:
        assert device.type == "cuda"
        self.copied.append(len(source))
        return on_device(source, torch.device("cpu"))


@pytest.mark.parametrize("fits", [True, False])
def test_the_oracle_copies_streamed_images_to_the_gpu_once_where_they_fit(
    folder_supernet: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, fits: bool
) -> None:
    data, supernet = folder_supernet
    evaluation = EvaluationSet(data.scoring("test"), data.calibration_source(20), "test")
    size = evaluation.scoring.nbytes() + evaluation.calibration.nbytes()
    assert size == 80 * (3 * SIZE * SIZE * 4 + 8)
    configs = [supernet.space.uniform(bits, bits, FORM) for bits in (4, 8)]
    expected = [
        measure_accuracy(supernet, c, evaluation.scoring, evaluation.calibration) for c in configs
    ]
    copies = _CudaCopies(monkeypatch, free=4 * size if fits else 4 * size - 1)
    oracle = SupernetOracle.from_sources(supernet, evaluation.scoring, evaluation.calibration)
    assert oracle.evaluate(configs).tolist() == expected
    assert oracle.score(None) == measure_accuracy(
        supernet, None, evaluation.scoring, evaluation.calibration
    )
    assert copies.copied == ([VAL_IMAGES, 20] if fits else [])  # once, for every subnet


def test_on_device_fills_one_tensor_batch_by_batch(folder: Path) -> None:
    data = build_data(_spec(folder))
    source = data.scoring("test", 30)
    copied = on_device(source, torch.device("cpu"))
    images, labels = source.tensors()
    assert torch.equal(copied.images, images) and torch.equal(copied.labels(), labels)
    assert copied.batch_size == BATCH and len(copied) == 30


def test_measurement_copies_batches_to_the_device_without_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = build_data(DataSpec("digits", holdout=100))
    supernet = build_supernet("tiny_convnet", num_classes=10, in_channels=1, w_bits=(4, 8))
    init_quantizers(supernet, data.calibration_images(64))
    calls: dict[tuple[int, ...], bool] = {}
    original = torch.Tensor.to

    def recording(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args and isinstance(args[0], torch.device):
            calls[tuple(self.shape)] = bool(kwargs.get("non_blocking"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording)
    measure_accuracy(supernet, None, data.holdout, data.calibration_source(64))
    # the calibration images, then the scoring images and their labels
    assert calls[(64, 1, 8, 8)] and calls[(100, 1, 8, 8)] and calls[(100,)]


def test_sources_of_one_dataset_share_one_loader_and_a_nested_pass_gets_its_own(
    folder: Path,
) -> None:
    serial = build_data(_spec(folder, workers=0))
    data = build_data(_spec(folder, workers=2))
    assert data.holdout.loader() is data.calibration_source(5).loader()  # type: ignore[attr-defined]
    assert data.holdout.loader() is not data.test.loader()  # type: ignore[attr-defined]
    outer = data.holdout.batches()
    first, _ = next(outer)
    inner = data.calibration_source(12).tensors()  # while the pass over the holdout is open
    rest = [images for images, _ in outer]
    assert torch.equal(torch.cat([first, *rest]), serial.holdout_tensors()[0])
    assert torch.equal(inner[0], serial.calibration_images(12))
    for _ in range(2):  # the shared loader again, after the nested pass
        assert torch.equal(data.test_tensors()[0], serial.test_tensors()[0])
