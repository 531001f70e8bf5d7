"""Steady-state training speed: a callback timing optimiser steps after a warm-up (ssl.pretrain, finetune.train)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

# Timed steps whose CUDA events wait to be read; reading them waits for the GPU once per this many steps
# (and at every epoch end), not at every step.
RESOLVE_EVERY = 512


def batch_images(batch: object) -> int:
    """Images in a batch whose first item is a (B, ...) image tensor or a list of V such view tensors."""
    first = batch[0]  # type: ignore[index]
    while not isinstance(first, torch.Tensor):  # multi-view batches: a list of (B, 3, s, s) views
        first = first[0]
    return int(first.shape[0])


@dataclass
class _TimedStep:
    """One timed step's marks: the previous step's end, this step's start (the data in hand) and end."""

    previous_end: Any
    start: Any
    end: Any
    images: int


class _ClockMarks:
    """Marks that are readings of a host clock (CPU training, where the host does the work in order)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def mark(self) -> float:
        return self.clock()

    def seconds(self, first: float, second: float) -> float:
        return second - first


class _CudaMarks:
    """Marks that are CUDA events, recorded in the device's stream: recording never waits, and the time
    between two is the GPU's own, read once both have happened (:meth:`StepTimer._resolve`)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def seconds(self, first: torch.cuda.Event, second: torch.cuda.Event) -> float:
        second.synchronize()
        return first.elapsed_time(second) / 1000.0


class StepTimer(pl.Callback):
    """Times training steps of one ``fit``, ignoring the first ``warmup_steps`` (worker start-up,
    allocator warm-up), and ignoring time spent in epoch-end hooks such as the kNN monitor.

    A timed step runs from the end of one training batch to the end of the next. Its first part,
    up to ``on_train_batch_start``, is the data wait: fetching the batch from the loader, copying
    it to the device and ``on_after_batch_transfer`` (``data.augment_on=device`` augments there),
    plus the hooks that run after this callback's ``on_train_batch_end`` (progress bar, logging),
    so it is an upper bound of the time spent waiting for data.

    On a CUDA device the ends of each part are CUDA events in the training stream, so the timer adds
    no wait to the step (a host clock would need ``torch.cuda.synchronize`` at both ends of every
    step, since the host runs ahead of the GPU): a step is the GPU's time from the end of one step's
    work to the end of the next one's, and its data wait the GPU's time between the end of a step's
    work and the start of the next one's, spent on the batch's copy and augmentation or idle waiting
    for the host to deliver it. The events are read at epoch ends and every :data:`RESOLVE_EVERY`
    steps. Elsewhere the marks are readings of ``clock``.

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
        self._marks: _ClockMarks | _CudaMarks = _ClockMarks(clock)
        self._last: Any = None
        self._batch_start: Any = None
        self._pending: list[_TimedStep] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        device = pl_module.device
        self._marks = _CudaMarks(device) if device.type == "cuda" else _ClockMarks(self.clock)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = None  # the gap across an epoch boundary (monitor, checkpoint) is not timed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self._batch_start = self._marks.mark()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        now = self._marks.mark()
        self._seen += 1
        if self._last is not None and self._seen > self.warmup_steps:
            self._pending.append(_TimedStep(self._last, self._batch_start, now, batch_images(batch)))
            if len(self._pending) >= RESOLVE_EVERY:
                self._resolve()
        self._last = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._resolve()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._resolve()
        if pl_module.device.type == "cuda":
            self.peak_memory_mib = torch.cuda.max_memory_allocated(pl_module.device) / 2**20

    def _resolve(self) -> None:
        """Add the pending steps' times to the totals (on CUDA: waits for the last of their events)."""
        for step in self._pending:
            self.images += step.images
            self.seconds += self._marks.seconds(step.previous_end, step.end)
            self.wait_seconds += self._marks.seconds(step.previous_end, step.start)
        self._pending.clear()

    def images_per_second(self, world_size: int = 1) -> float:
        """Steady-state images per second over all devices (0 when too few steps were timed)."""
        self._resolve()
        return self.images * world_size / self.seconds if self.seconds > 0 else 0.0

    def data_wait_fraction(self) -> float | None:
        """Share of the timed step time spent waiting for data, in [0, 1] (None when no step was timed)."""
        self._resolve()
        return self.wait_seconds / self.seconds if self.seconds > 0 else None
