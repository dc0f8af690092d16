"""Training a supernet on the user's own DataLoaders: the data bundle they make, and the call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from eqsearch.errors import InputError
from eqsearch.space.spec import SPACE_FLAGS
from supernet.data.bundle import SPLIT_SEED, DataBundle
from supernet.data.images import StreamedImages
from supernet.data.own_data import UserLoaderBatches, dataset_of, image_shape, number_of_classes
from supernet.data.spec import DATALOADERS, DataSpec
from supernet.networks.build import stored_space_spec
from supernet.networks.elastic import Supernet
from supernet.training.config import TrainConfig
from supernet.training.loop import TrainResult, train_supernet


def loader_data(
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    *,
    num_classes: int | None = None,
    holdout: int | None = None,
) -> DataBundle:
    """The data of a training run on two DataLoaders of ``(images, labels)`` batches.

    Training iterates ``train_loader`` once per epoch as it is (its sampler, batch size,
    transforms and workers). Subnets are scored on ``val_loader``'s dataset (the first
    ``holdout`` images; all by default), read in its batch size, and BN statistics are
    re-estimated on ``train_loader``'s dataset items in a fixed shuffled order, as they come
    (with its training transforms).

    Args:
        num_classes: classifier outputs (read from the datasets' ``classes``, ``targets`` or
            labels when None).
        holdout: validation images that score subnets between epochs.

    Raises:
        InputError: not DataLoaders over map-style datasets, or items that are not square
            image tensors.
    """
    train = dataset_of(train_loader, "train_loader")
    val = dataset_of(val_loader, "val_loader")
    channels, size = image_shape(val[0][0], "val_loader's dataset")
    classes = number_of_classes(train, val) if num_classes is None else num_classes
    batch = val_loader.batch_size or 500

    def streamed(dataset: Any) -> StreamedImages:
        return StreamedImages(dataset, batch_size=batch, image_shape=(channels, size, size))

    test = streamed(val)
    train_plain = streamed(train)
    scoring = test if holdout is None else test.head(holdout)
    order = torch.randperm(len(train_plain), generator=torch.Generator().manual_seed(SPLIT_SEED))
    spec = DataSpec(
        name=DATALOADERS,
        batch_size=train_loader.batch_size or 1,
        eval_batch_size=batch,
        holdout=len(scoring),
    )
    return DataBundle(
        spec=spec,
        num_classes=classes,
        in_channels=channels,
        image_size=size,
        train=UserLoaderBatches(train_loader),
        train_plain=train_plain,
        test=test,
        holdout=scoring,
        calibration=train_plain.subset(order.tolist()),
    )


def fit_supernet(
    supernet: Supernet,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    config: TrainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
    **train_options: Any,
) -> TrainResult:
    """Train ``supernet`` on two DataLoaders with the sandwich rule of :func:`train_supernet`.

    ``config`` gives the training settings (epochs, optimizer, learning rate, warmup, loss
    weights, ``init``, ...; :class:`TrainConfig`); its model, space, dataset, batch size and
    holdout are taken from the supernet and the loaders. With ``out_dir`` the checkpoints
    and the log are written there as ``eqsearch train`` writes them (``train_options``:
    ``resume``, ``force``, ``on_epoch``, ``stop_after``). Returns the trained supernet and
    its history (the epoch-0 entry first, with ``config.start_eval``).

    Raises:
        InputError: loaders that are not DataLoaders of ``(images, labels)``.
    """
    data = loader_data(train_loader, val_loader)
    model = supernet.build_info.get("model")
    if not isinstance(model, str):
        raise InputError(
            "the supernet records no model name (build_info['model']); build it with "
            "build_supernet, or give to_supernet a build_info"
        )
    space = stored_space_spec(supernet.build_info)
    config = replace(
        config or TrainConfig(),
        model=model,
        space=space,
        # replace() would otherwise carry the old space's single fields over the new space
        **{name: getattr(space, name) for name in SPACE_FLAGS.values()},
        dataset=DATALOADERS,
        batch_size=data.spec.batch_size,
        holdout=data.spec.holdout,
    )
    return train_supernet(
        config,
        out_dir,
        progress=progress,
        supernet=supernet,
        data=data,
        **train_options,
    )
