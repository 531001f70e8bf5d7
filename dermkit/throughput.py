"""Steady-state training speed: a callback timing optimiser steps after a warm-up (every stage)."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


def batch_images(batch: object) -> int:
    """Images in a batch whose first item is a (B, ...) image tensor or a list of V such view tensors."""
    first = batch[0]  # type: ignore[index]
    while not isinstance(first, torch.Tensor):  # multi-view batches: a list of (B, 3, s, s) views
        first = first[0]
    return int(first.shape[0])


class StepTimer(pl.Callback):
    """Times training steps of one ``fit``, ignoring the first ``warmup_steps`` (worker start-up,
    allocator warm-up), and ignoring time spent in epoch-end hooks such as the kNN monitor.

    Attributes:
        images: images (per device) trained on in the timed steps.
        seconds: wall time of the timed steps, data loading included.
    """

    def __init__(self, warmup_steps: int = 5) -> None:
        self.warmup_steps = warmup_steps
        self.images = 0
        self.seconds = 0.0
        self._seen = 0
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # the gap across an epoch boundary (monitor, checkpoint) is not timed

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        now = time.perf_counter()
        self._seen += 1
        if self._last is not None and self._seen > self.warmup_steps:
            self.images += batch_images(batch)
            self.seconds += now - self._last
        self._last = now

    def images_per_second(self, world_size: int = 1) -> float:
        """Steady-state images per second over all devices (0 when too few steps were timed)."""
        return self.images * world_size / self.seconds if self.seconds > 0 else 0.0
