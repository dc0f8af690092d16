"""Image sources: fixed, ordered ``(images, labels)`` batches from memory or streamed from disk."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from eqsearch.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class ImageSource(Protocol):
    """A fixed sequence of labelled images, served in batches of ``batch_size`` in one order.

    The batches are the same on every pass, so BN statistics re-estimated from them (an
    average over batches) and scores on them are the same on every pass too.
    """

    batch_size: int

    def __len__(self) -> int: ...

    def batches(self) -> Iterator[Batch]:
        """``(images, labels)`` batches; every batch but the last holds ``batch_size``."""
        ...

    def image_batches(self) -> Iterator[torch.Tensor]:
        """The images of :meth:`batches` alone."""
        ...

    def subset(self, indices: Sequence[int]) -> ImageSource:
        """The images at ``indices`` (positions in this source), in that order."""
        ...

    def head(self, count: int) -> ImageSource:
        """The first ``count`` images (all of them where there are fewer)."""
        ...

    def labels(self) -> torch.Tensor:
        """Every label, in order (without decoding an image where the dataset lists them)."""
        ...

    def tensors(self) -> Batch:
        """Every image and label as two tensors: the whole source in memory at once."""
        ...

    def nbytes(self) -> int:
        """Bytes of every image and label as tensors."""
        ...


class TensorImages:
    """Images held in memory as one tensor, served as views of it (``images.split``).

    Args:
        images: ``(n, channels, height, width)`` images.
        labels: their ``(n,)`` labels; None where only the images are used (zeros then).
        batch_size: images per batch.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int = 500
    ) -> None:
        if labels is not None and len(labels) != len(images):
            raise InputError(
                f"TensorImages needs one label per image; got {len(images)} images and "
                f"{len(labels)} labels"
            )
        self.images = images
        self._labels = labels
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.images)

    def labels(self) -> torch.Tensor:
        if self._labels is None:
            return torch.zeros(len(self.images), dtype=torch.int64, device=self.images.device)
        return self._labels

    def batches(self) -> Iterator[Batch]:
        yield from zip(
            self.images.split(self.batch_size), self.labels().split(self.batch_size), strict=True
        )

    def image_batches(self) -> Iterator[torch.Tensor]:
        yield from self.images.split(self.batch_size)

    def subset(self, indices: Sequence[int]) -> TensorImages:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        labels = None if self._labels is None else self._labels[index.to(self._labels.device)]
        return TensorImages(self.images[index.to(self.images.device)], labels, self.batch_size)

    def head(self, count: int) -> TensorImages:
        labels = None if self._labels is None else self._labels[:count]
        return TensorImages(self.images[:count], labels, self.batch_size)

    def tensors(self) -> Batch:
        return self.images, self.labels()

    def nbytes(self) -> int:
        size = self.images.numel() * self.images.element_size()
        if self._labels is not None:
            size += self._labels.numel() * self._labels.element_size()
        return size

    def to(self, device: torch.device) -> TensorImages:
        """The same images and labels on ``device``."""
        labels = None if self._labels is None else self._labels.to(device)
        return TensorImages(self.images.to(device), labels, self.batch_size)


def dataset_labels(dataset: Dataset[Any]) -> list[int] | None:
    """The labels a dataset lists without loading its images (``targets`` of torchvision's
    folders, ``labels`` of array datasets, through Subsets); None where it lists none."""
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return None if inner is None else [inner[i] for i in dataset.indices]
    for name in ("targets", "labels"):
        listed = getattr(dataset, name, None)
        if listed is not None:
            return [int(value) for value in listed]
    return None


class _IndexSampler(Sampler[int]):
    """The items of the pass under way, set before each pass (read in this process)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _Reader:
    """One DataLoader over a dataset, its worker processes kept (``persistent_workers``) and
    shared by every source cut from the dataset, one pass at a time."""

    def __init__(self, dataset: Dataset[Any], batch_size: int, workers: int, pin: bool) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = workers
        self.pin_memory = pin
        self._sampler = _IndexSampler()
        self._loader: DataLoader[Any] | None = None
        self._pid = 0
        self._busy = False

    def loader(self) -> DataLoader[Any]:
        """The shared DataLoader (made once per process: a forked child makes its own)."""
        if self._loader is None or self._pid != os.getpid():
            self._loader = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=self._sampler,
                num_workers=self.workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.workers > 0,
            )
            self._pid, self._busy = os.getpid(), False
        return self._loader

    def read(self, indices: list[int], batch_size: int) -> Iterator[Batch]:
        """The items at ``indices`` in batches; a pass that starts while another is under way
        (or with another batch size) gets a DataLoader of its own."""
        if self._busy or batch_size != self.batch_size:
            yield from DataLoader(
                Subset(self.dataset, indices),
                batch_size=batch_size,
                num_workers=min(self.workers, 1),
                pin_memory=self.pin_memory,
            )
            return
        loader = self.loader()
        self._busy = True
        try:
            self._sampler.indices = indices
            yield from loader
        finally:
            self._busy = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loader"] = None  # worker processes do not travel
        return state


class StreamedImages:
    """Images decoded from a torch Dataset batch by batch (a DataLoader), never all at once.

    Every source cut from one dataset (:meth:`subset`, :meth:`head`) reads through one
    DataLoader made on the first pass and kept with its worker processes, so later passes
    (one per measured subnet) start none. Batches come in pinned memory when
    ``pin_memory`` is set, so that their copies to a GPU can be ``non_blocking``.

    Args:
        dataset: items ``(image tensor, label)``.
        indices: the items served, in order (all of them by default).
        batch_size: images per batch.
        workers: DataLoader worker processes (0: decode in this process).
        pin_memory: page-locked batches (for CUDA).
        image_shape: ``(channels, height, width)`` of an image, for :meth:`nbytes`.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        indices: Sequence[int] | None = None,
        *,
        batch_size: int,
        workers: int = 0,
        pin_memory: bool = False,
        image_shape: tuple[int, int, int],
        reader: _Reader | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.image_shape = image_shape
        self._reader = reader or _Reader(dataset, batch_size, workers, pin_memory)

    @property
    def workers(self) -> int:
        """DataLoader worker processes."""
        return self._reader.workers

    @property
    def pin_memory(self) -> bool:
        """Whether batches come in page-locked memory."""
        return self._reader.pin_memory

    def __len__(self) -> int:
        return len(self.indices)

    def _derived(self, indices: Sequence[int]) -> StreamedImages:
        return StreamedImages(
            self.dataset,
            indices,
            batch_size=self.batch_size,
            image_shape=self.image_shape,
            reader=self._reader,
        )

    def loader(self) -> DataLoader[Any]:
        """The DataLoader this source reads through (shared with the sources cut from the
        same dataset)."""
        return self._reader.loader()

    def batches(self) -> Iterator[Batch]:
        yield from self._reader.read(self.indices, self.batch_size)

    def image_batches(self) -> Iterator[torch.Tensor]:
        for images, _ in self.batches():
            yield images

    def subset(self, indices: Sequence[int]) -> StreamedImages:
        return self._derived([self.indices[i] for i in indices])

    def head(self, count: int) -> StreamedImages:
        return self._derived(self.indices[:count])

    def labels(self) -> torch.Tensor:
        listed = dataset_labels(self.dataset)
        if listed is None:
            return torch.cat([labels for _, labels in self.batches()])
        return torch.tensor([listed[i] for i in self.indices], dtype=torch.int64)

    def tensors(self) -> Batch:
        images, labels = zip(*self.batches(), strict=True)
        return torch.cat(images), torch.cat(labels)

    def nbytes(self) -> int:
        channels, height, width = self.image_shape
        return len(self) * (channels * height * width * 4 + 8)


def in_memory(source: ImageSource) -> bool:
    """Whether ``source`` holds its images as one tensor already."""
    return isinstance(source, TensorImages)


def images_or_batches(source: ImageSource) -> torch.Tensor | Iterator[torch.Tensor]:
    """The images of ``source`` as its one tensor where it is held in memory (for callers
    that batch tensors themselves), else its batches as they stream."""
    if isinstance(source, TensorImages):
        return source.images
    return source.image_batches()


def on_device(source: ImageSource, device: torch.device) -> TensorImages:
    """Every image and label of ``source`` as one tensor each on ``device``, filled batch by
    batch: a streamed source is decoded once and never held whole in host memory."""
    if isinstance(source, TensorImages):
        return source.to(device)
    images: torch.Tensor | None = None
    labels = torch.empty(len(source), dtype=torch.int64, device=device)
    start = 0
    for image_batch, label_batch in source.batches():
        if images is None:
            images = torch.empty(
                (len(source), *image_batch.shape[1:]), dtype=image_batch.dtype, device=device
            )
        stop = start + len(image_batch)
        images[start:stop].copy_(image_batch, non_blocking=True)
        labels[start:stop].copy_(label_batch, non_blocking=True)
        start = stop
    if images is None:
        images = torch.empty((0, *source.image_shape), device=device)  # type: ignore[attr-defined]
    return TensorImages(images, labels, source.batch_size)
