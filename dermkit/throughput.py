"""Steady-state training speed: a callback timing optimiser steps after a warm-up (every stage)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch


def batch_images(batch: object) -> int:
    """Images in a batch whose first item is a (B, ...) image tensor or a list of V such view tensors."""
    first = batch[0]  # type: ignore[index]
    while not isinstance(first, torch.Tensor):  # multi-view batches: a list of (B, 3, s, s) views
        first = first[0]
    return int(first.shape[0])


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock read afterwards covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(pl.Callback):
    """Times training steps of one ``fit``, ignoring the first ``warmup_steps`` (worker start-up,
    allocator warm-up), and ignoring time spent in epoch-end hooks such as the kNN monitor.

    A timed step runs from the end of one training batch to the end of the next. Its first part,
    up to ``on_train_batch_start``, is the data wait: fetching the batch from the loader, copying
    it to the device and ``on_after_batch_transfer`` (``data.augment_on=device`` augments there),
    plus the hooks that run after this callback's ``on_train_batch_end`` (progress bar, logging),
    so it is an upper bound of the time spent waiting for data. On a CUDA device both ends wait
    for the queued kernels (``torch.cuda.synchronize``): otherwise a step's asynchronous compute
    would finish inside the next data wait and hide there.

    Attributes:
        images: images (per device) trained on in the timed steps.
        seconds: wall time of the timed steps, data loading included.
        wait_seconds: the data-wait part of ``seconds``.
        peak_memory_mib: ``torch.cuda.max_memory_allocated`` of the training device at the end
            of training, in MiB; None on other devices.
    """

    def __init__(self, warmup_steps: int = 5, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup_steps = warmup_steps
        self.clock = clock  # a fake clock in tests
        self.images = 0
        self.seconds = 0.0
        self.wait_seconds = 0.0
        self.peak_memory_mib: float | None = None
        self._seen = 0
        self._last: float | None = None
        self._batch_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # the gap across an epoch boundary (monitor, checkpoint) is not timed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        _synchronize(pl_module.device)
        self._batch_start = self.clock()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        _synchronize(pl_module.device)
        now = self.clock()
        self._seen += 1
        if self._last is not None and self._seen > self.warmup_steps:
            self.images += batch_images(batch)
            self.seconds += now - self._last
            self.wait_seconds += self._batch_start - self._last
        self._last = now

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            self.peak_memory_mib = torch.cuda.max_memory_allocated(pl_module.device) / 2**20

    def images_per_second(self, world_size: int = 1) -> float:
        """Steady-state images per second over all devices (0 when too few steps were timed)."""
        return self.images * world_size / self.seconds if self.seconds > 0 else 0.0

    def data_wait_fraction(self) -> float | None:
        """Share of the timed step time spent waiting for data, in [0, 1] (None when no step was timed)."""
        return self.wait_seconds / self.seconds if self.seconds > 0 else None
