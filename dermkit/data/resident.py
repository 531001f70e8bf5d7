"""Images resident on the device (``data.augment_on=resident``): the uint8 cache put there once, batches
drawn by index.

At 64 px all of HAM10000 is 123 MB of uint8 (490 MB at 128 px): it fits in any accelerator's memory.
With the images there, a batch is one gather by an index tensor, augmented where it is
(:mod:`dermkit.augment`, as ``data.augment_on=device``), with no loader processes and no copy per
batch, which is how the fastest small-image training loops avoid waiting for data.

Lightning still drives training. The "loader" is a plain ``DataLoader`` with ``num_workers=0`` over a
:class:`ResidentDataset`: its sampler (shuffling, the class-balanced sampler, Lightning's
``DistributedSampler`` under DDP) yields positions as it does for the cached-image datasets, and the
dataset's ``__getitems__`` gathers the whole batch at once, so a seed gives the same batches (positions,
labels) as the other paths, and Lightning's loops, DDP and checkpoint/resume work unchanged. The
images are read into host memory when the data are built (:meth:`ResidentImages.load`) and moved to the
training device once, when the trainer knows it (:class:`ResidentOnDevice`); both places first check
that they fit (:func:`check_fits`), naming the size and the way out (``data.augment_on=device``).

Batch items are ``(images (B, 3, S, S) uint8, labels (B,))``, or with ``ids`` ``(images, labels, ids
(B,))`` as ``finetune``'s datasets give them; :class:`NormalizedBatches` turns a loader of them into the
normalised float batches a frozen-feature pass takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dermkit.augment import normalize
from dermkit.errors import DermkitError

RESIDENT = "resident"  # the data.augment_on value of this path
# The images may take at most this share of the memory free on their device: the rest is the
# network's, its activations' and the allocator's (on the CPU: the other processes').
MAX_SHARE_OF_FREE = 0.5
LOAD_CHUNK = 1024  # cache rows read into host memory at a time


@dataclass(frozen=True)
class CachedArraySource:
    """One cached image array to hold: a cache ``.npy`` file and its rows' labels.

    Attributes:
        cache_path: ``(N, S, S, 3)`` uint8 ``.npy`` (:mod:`dermkit.data.cache`).
        labels: (N,) int64 label of each row (-1: unlabelled).
    """

    cache_path: Path
    labels: np.ndarray


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: ``torch.cuda.mem_get_info`` on CUDA, available RAM (``MemAvailable``)
    on the CPU; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, free: int | None, where: str, what: str) -> None:
    """Refuse to hold ``needed`` bytes of images on a device with ``free`` bytes free (None: unknown, accepted).

    Raises:
        DermkitError: ``needed`` exceeds :data:`MAX_SHARE_OF_FREE` of ``free``; one line naming the size,
            the device, what is free and the fallback.
    """
    if free is None or needed <= MAX_SHARE_OF_FREE * free:
        return
    raise DermkitError(f"data.augment_on=resident: {what} need {_mib(needed)} on {where}, which has {_mib(free)} free "
                       f"(at most {MAX_SHARE_OF_FREE:.0%} of it is given to the images, the rest is left for "
                       "training); set data.augment_on=device (the images stay in host memory and each batch is "
                       "copied over) or a smaller data.image_size.")


class ResidentImages:
    """The uint8 images (and labels) of one or more image caches, stacked, held where training runs.

    Row ``offsets[k] + i`` is row ``i`` of source ``k``. The images are kept as ``(R, 3, S, S)``
    (channels first, contiguous: the layout the cached-image datasets give a batch), in host memory
    until :meth:`to` moves them; moving is done once (later calls with the same device do nothing).

    Attributes:
        images: (R, 3, S, S) uint8.
        labels: (R,) int64.
        offsets: first row of each source.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, offsets: Sequence[int]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (R, 3, S, S) uint8 images, got {tuple(images.shape)} {images.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected ({images.shape[0]},) labels, got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.offsets = list(offsets)

    @classmethod
    def load(cls, sources: Sequence[CachedArraySource]) -> ResidentImages:
        """Read every source's cache into host memory (after checking it fits there), channels first.

        Raises:
            DermkitError: the images would not fit in the available RAM (:func:`check_fits`), or the
                sources' image sizes differ.
        """
        arrays = [np.load(s.cache_path, mmap_mode="r") for s in sources]  # (N_k, S, S, 3) uint8 each
        sizes = {a.shape[1:] for a in arrays}
        if len(sizes) != 1:
            raise DermkitError(f"data.augment_on=resident: the image caches differ in size ({sorted(sizes)}); "
                               "every source must be cached at data.image_size.")
        total, side = sum(len(a) for a in arrays), arrays[0].shape[1]
        check_fits(sum(a.nbytes for a in arrays), free_memory(torch.device("cpu")), "the host (RAM)",
                   f"{total:,} images of {side} px")
        images = torch.empty((total, 3, side, side), dtype=torch.uint8)
        start = 0
        for array in arrays:  # a chunk at a time: the host never holds a second copy of the whole cache
            for first in range(0, len(array), LOAD_CHUNK):
                chunk = torch.from_numpy(np.array(array[first:first + LOAD_CHUNK]))  # (c, S, S, 3), out of the map
                images[start + first:start + first + len(chunk)] = chunk.permute(0, 3, 1, 2)
            start += len(array)
        labels = torch.cat([torch.as_tensor(np.asarray(s.labels, dtype=np.int64)) for s in sources])
        offsets = np.cumsum([0, *[len(a) for a in arrays[:-1]]]).tolist()
        return cls(images, labels, offsets)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def nbytes(self) -> int:
        """Bytes the images and labels take."""
        return self.images.nbytes + self.labels.nbytes

    def rows(self, source: int, rows: np.ndarray) -> np.ndarray:
        """(M,) rows of this store for rows ``rows`` of source ``source``."""
        return np.asarray(rows, dtype=np.int64) + self.offsets[source]

    def to(self, device: torch.device | str) -> None:
        """Move the images and labels to ``device`` once, after checking they fit there.

        Raises:
            DermkitError: they would take more than :data:`MAX_SHARE_OF_FREE` of the device's free memory.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.images.device == device:
            return
        if device.type != "cpu":
            check_fits(self.nbytes, free_memory(device), str(device),
                       f"{len(self.images):,} images of {self.images.shape[-1]} px")
        self.images = self.images.to(device)
        self.labels = self.labels.to(device)


def _index_tensor(positions: Sequence[int], device: torch.device) -> torch.Tensor:
    """(B,) int64 positions on ``device``. To a GPU through pinned memory without waiting: a copy from
    pageable memory would wait for the GPU's queue at every batch."""
    index = torch.as_tensor(positions, dtype=torch.long)
    if device.type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)  # another accelerator: as torch copies it


class ResidentDataset(Dataset):
    """Rows of a :class:`ResidentImages`, served a batch at a time where the images are.

    ``dataset[i]`` is one item as the cached-image datasets give it with no transform (image (3, S, S)
    uint8, label, and the id with ``ids``); a ``DataLoader`` calls :meth:`__getitems__` with a whole
    batch of positions instead, which gathers the batch in one step.

    Args:
        store: the images.
        rows: (M,) the store's rows this dataset serves, in order.
        ids: (M,) the id reported with each item (``finetune``: the row of the prepared data, so that
            predictions map back to image ids); None: items are ``(image, label)``.
    """

    def __init__(self, store: ResidentImages, rows: np.ndarray, ids: np.ndarray | None = None) -> None:
        self.store = store
        self.rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        self.ids = None if ids is None else torch.as_tensor(np.asarray(ids, dtype=np.int64))
        if self.ids is not None and self.ids.shape != self.rows.shape:
            raise ValueError(f"ids {tuple(self.ids.shape)} and rows {tuple(self.rows.shape)} differ in length")

    def __len__(self) -> int:
        return len(self.rows)

    def _follow_store(self) -> None:
        """Keep the row table where the images are (moved once, with them)."""
        device = self.store.device
        if self.rows.device != device:
            self.rows = self.rows.to(device)
            self.ids = None if self.ids is None else self.ids.to(device)

    def __getitems__(self, positions: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """The batch at ``positions``: ``(images (B, 3, S, S) uint8, labels (B,)[, ids (B,)])`` on the
        store's device."""
        self._follow_store()
        if self.store.device.type == "cpu":
            # NumPy's take copies whole rows in one thread; torch's CPU index_select of the same rows
            # spreads element copies over its threads and measured 10-15x slower on a busy 2-core machine.
            index = np.asarray(positions, dtype=np.int64)  # (B,)
            rows = self.rows.numpy()[index]  # (B,)
            images = torch.from_numpy(np.take(self.store.images.numpy(), rows, axis=0))
            batch = (images, torch.from_numpy(self.store.labels.numpy()[rows]))
            return batch if self.ids is None else (*batch, torch.from_numpy(self.ids.numpy()[index]))
        index_t = _index_tensor(positions, self.store.device)  # (B,)
        rows_t = self.rows[index_t]  # (B,)
        batch = (self.store.images.index_select(0, rows_t), self.store.labels[rows_t])
        return batch if self.ids is None else (*batch, self.ids[index_t])

    def __getitem__(self, position: int) -> tuple[Any, ...]:
        images, labels, *ids = self.__getitems__([position])
        return (images[0], int(labels[0]), *(int(i[0]) for i in ids))


def whole_batch(batch: Any) -> Any:
    """The collate function of a resident loader: :meth:`ResidentDataset.__getitems__` made the batch."""
    return batch


class ResidentLoader(DataLoader):
    """A ``DataLoader`` without workers that keeps one iterator for all its epochs, as a loader with
    persistent workers does (the other paths' training loaders, ``data.num_workers`` > 0).

    A ``DataLoader`` draws its workers' base seed from its generator (or torch's) each time it makes an
    iterator: once for a loader with persistent workers, once per epoch for one without workers. Keeping
    the iterator makes the draws, and so a seed's shuffled order of every epoch, those of the other paths.
    (``_get_iterator`` and the iterator's ``_reset`` are how ``DataLoader`` itself keeps persistent workers.)
    """

    _kept_iterator: Any = None
    keep_iterator = True  # False: a new iterator every epoch, as a loader without persistent workers

    def __iter__(self) -> Any:
        if not self.keep_iterator:
            return super().__iter__()
        if self._kept_iterator is None:
            self._kept_iterator = self._get_iterator()
        else:
            self._kept_iterator._reset(self)
        return self._kept_iterator


def resident_loader(dataset: ResidentDataset, batch_size: int, shuffle: bool = False, sampler: Sampler | None = None,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    persistent: bool = True) -> DataLoader:
    """A :class:`ResidentLoader` over a :class:`ResidentDataset`: the arguments of the other paths'
    loaders, no worker processes, no pinning (the batch is already on its device).

    Args:
        persistent: keep one iterator, as the other path's loader with ``persistent_workers`` does
            (False: as one without).
    """
    loader = ResidentLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
                            drop_last=drop_last, num_workers=0, pin_memory=False, collate_fn=whole_batch)
    loader.keep_iterator = persistent
    return loader


class NormalizedBatches:
    """A loader of ``(uint8 images, labels)`` resident batches as ``(normalised float images, labels)``:
    the input of :func:`dermkit.backbones.embed.embed` (``ssl.pretrain``'s kNN monitor).

    Args:
        loader: a :func:`resident_loader` of items without ids.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
    """

    def __init__(self, loader: DataLoader, mean: Sequence[float], std: Sequence[float]) -> None:
        self.loader = loader
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield normalize(images, self.mean, self.std), labels


class ResidentOnDevice(pl.Callback):
    """Moves a :class:`ResidentImages` to the trainer's device before the first batch is drawn.

    ``setup`` runs on every process (DDP: each holds the images on its own device) before the
    sanity check, training, validation or testing reads a batch; a second ``fit`` or ``test`` finds
    them there.
    """

    def __init__(self, store: ResidentImages) -> None:
        self.store = store

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.store.to(trainer.strategy.root_device)
