"""The probes' one timed loop: a hand-written training loop's steps timed as the stages time theirs.

``dermkit.throughput.StepTimer`` is the stages' Lightning callback; :class:`TimedLoop` drives the same
timer by hand, so a probe's plain PyTorch loop and a stage's ``train_images_per_second`` count the same
thing: the time from the end of one step to the end of the next (data loading included), after
``warmup_steps`` untimed steps, the gap across an epoch boundary (validation) left out.

Use::

    loop = TimedLoop(warmup_steps=5)
    for epoch in range(epochs):
        loop.new_epoch()
        for batch, target in loader:  # batch: (B, 3, S, S)
            ...  # forward, backward, optimiser step
            loop.step_done(batch.shape[0])
    loop.images_per_second()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dermkit.throughput import StepTimer


@dataclass(frozen=True)
class _Device:
    """What :meth:`StepTimer.on_train_start` reads of a LightningModule: its device."""

    device: torch.device


class TimedLoop:
    """Steps of a hand-written loop timed by :class:`dermkit.throughput.StepTimer`.

    Args:
        warmup_steps: the first steps, not timed (worker start-up, allocator warm-up).
        device: where the loop trains (CUDA: the timer's CUDA events; otherwise ``clock``).
        clock: the host clock (a fake one in tests).
    """

    def __init__(self, warmup_steps: int, device: torch.device | str = "cpu",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.timer = StepTimer(warmup_steps, clock)
        self.timer.on_train_start(None, _Device(torch.device(device)))  # type: ignore[arg-type]
        self.new_epoch()

    def new_epoch(self) -> None:
        """An epoch starts: the time since the last step (validation, checkpoints) is not a step's."""
        self.timer.on_train_epoch_start(None, None)  # type: ignore[arg-type]

    def step_done(self, images: int) -> None:
        """A training step on ``images`` images has ended (its optimiser step taken)."""
        batch = (torch.empty(images, 0),)  # StepTimer reads the images of a step from its (B, ...) first item
        # A plain loop has no hook between fetching a batch and training on it: the next step's start is
        # marked here, so the timer's data-wait part is empty and a step's time holds its loading.
        self.timer.on_train_batch_end(None, None, None, batch, 0)  # type: ignore[arg-type]
        self.timer.on_train_batch_start(None, None, batch, 0)  # type: ignore[arg-type]

    def images_per_second(self) -> float:
        """Images per second over the timed steps; 0 when none was timed."""
        return self.timer.images_per_second()
