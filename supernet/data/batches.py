"""Training batches of one epoch: in-memory tensors or a Dataset through one DataLoader."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from supernet.data.images import Batch


class BatchSource(Protocol):
    """Something that yields ``(images, labels)`` batches for an epoch."""

    def batches(self, epoch: int, rank: int, world_size: int) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...


@dataclass(eq=False, repr=False)
class TensorBatches:
    """In-memory images with vectorised augmentation (random shifts), sharded over ranks."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    _: KW_ONLY
    shuffle: bool
    shift: int = 0
    seed: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Batches of one epoch; the order is a function of (seed, epoch) only."""
        # the shifts continue the generator that drew the order, so both follow (seed, epoch)
        generator = _epoch_generator(self.seed, epoch)
        order = _epoch_order(len(self.labels), self.shuffle, generator, rank, world_size)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.shift:
                images = _random_shift(images, self.shift, generator)
            yield images, self.labels[index]


def _random_shift(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels (zero padding), vectorised."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(height)[None, :])[:, None, :, None]
    cols = (offsets[:, 1, None] + torch.arange(width)[None, :])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channels, rows, cols]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's order (and in-memory augmentation): (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _epoch_order(
    n: int, shuffle: bool, generator: torch.Generator, rank: int, world_size: int
) -> torch.Tensor:
    """The items of one epoch for one rank, drawn from the epoch's ``generator``, every rank
    the same count (DistributedSampler's padding)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if world_size > 1:
        per_rank = math.ceil(n / world_size)
        order = torch.cat([order, order[: per_rank * world_size - n]])[rank::world_size]
    return order


class _EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` keys of the epoch set last (:meth:`set_epoch`), read in this process
    at the start of every pass, so one DataLoader and its workers serve every epoch."""

    def __init__(self, n: int, *, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.epoch, self.rank, self.world_size = 0, 0, 1

    def set_epoch(self, epoch: int, rank: int, world_size: int) -> None:
        self.epoch, self.rank, self.world_size = epoch, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        generator = _epoch_generator(self.seed, epoch)
        order = _epoch_order(self.n, self.shuffle, generator, self.rank, self.world_size)
        return iter([(epoch, index) for index in order.tolist()])

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)


class _SeededItems(Dataset[Any]):
    """``dataset[index]`` for an ``(epoch, index)`` key, its random augmentation drawn from
    torch's generator seeded by (seed, epoch, index): the same crops and flips whichever
    worker decodes the item, with any number of workers, and in a resumed run."""

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1, np.uint64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state[0]))
            return self.dataset[index]


class LoaderBatches:
    """A torch Dataset served through one DataLoader for every epoch, sharded over ranks like
    DistributedSampler.

    The DataLoader and its worker processes (``persistent_workers``) are made on the first
    epoch and kept; batches come in pinned memory with ``pin_memory`` (for non-blocking
    copies to a GPU).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool,
        workers: int,
        seed: int,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.workers = workers
        self.seed = seed
        self.pin_memory = pin_memory
        self._sampler = _EpochSampler(len(self), shuffle=shuffle, seed=seed)
        self._loader: DataLoader[Any] | None = None
        self._loader_pid = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _get_loader(self) -> DataLoader[Any]:
        if self._loader is None or self._loader_pid != os.getpid():
            self._loader = DataLoader(
                _SeededItems(self.dataset, self.seed),
                batch_size=self.batch_size,
                sampler=self._sampler,
                num_workers=self.workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.workers > 0,
            )
            self._loader_pid = os.getpid()
        return self._loader

    def batches(self, epoch: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Batches of one epoch; the order and the augmentation are functions of
        (seed, epoch) only."""
        self._sampler.set_epoch(epoch, rank, world_size)
        yield from self._get_loader()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loader"] = None  # worker processes do not travel
        return state
