"""dermkit.throughput.StepTimer: images/s and the data-wait share of a real Lightning fit, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dermkit.throughput import StepTimer


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowData(Dataset):
    """Each image takes ``seconds_per_image`` of the fake clock to load."""

    def __init__(self, clock: FakeClock, seconds_per_image: float, n: int = 40) -> None:
        self.clock, self.seconds_per_image, self.n = clock, seconds_per_image, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.clock.now += self.seconds_per_image
        return torch.zeros(3, 4, 4), 0


class TimedModule(pl.LightningModule):
    """A step takes ``step_seconds`` of the fake clock; the batch transfer hook ``transfer_seconds``
    (where ``data.augment_on=device`` augments)."""

    def __init__(self, clock: FakeClock, step_seconds: float, transfer_seconds: float) -> None:
        super().__init__()
        self.clock, self.step_seconds, self.transfer_seconds = clock, step_seconds, transfer_seconds
        self.layer = torch.nn.Linear(48, 1)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.clock.now += self.transfer_seconds
        return batch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.clock.now += self.step_seconds
        return self.layer(batch[0].flatten(1)).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(load_seconds: float, step_seconds: float, transfer_seconds: float) -> StepTimer:
    clock = FakeClock()
    timer = StepTimer(warmup_steps=5, clock=clock)
    trainer = pl.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    loader = DataLoader(SlowData(clock, load_seconds / 2), batch_size=2, num_workers=0)
    trainer.fit(TimedModule(clock, step_seconds, transfer_seconds), loader)
    return timer


def test_data_wait_is_loading_and_transfer_share_of_each_step() -> None:
    # Per step: 3 s loading 2 images, 0.5 s in the transfer hook, 1.5 s training -> 5 s, 3.5 s of them waiting.
    timer = fit(load_seconds=3.0, step_seconds=1.5, transfer_seconds=0.5)
    assert timer.images == 2 * 5  # steps 6..10 timed
    assert timer.seconds == pytest.approx(5 * 5.0)
    assert timer.data_wait_fraction() == pytest.approx(3.5 / 5.0)
    assert timer.images_per_second() == pytest.approx(2 / 5.0)
    assert timer.peak_memory_mib is None  # no CUDA device trained


def test_no_data_wait_when_loading_is_free() -> None:
    assert fit(load_seconds=0.0, step_seconds=1.0, transfer_seconds=0.0).data_wait_fraction() == pytest.approx(0.0)


def test_nothing_timed_gives_no_share() -> None:
    assert StepTimer().data_wait_fraction() is None
