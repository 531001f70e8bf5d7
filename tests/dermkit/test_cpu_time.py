"""CPU seconds per part of a Lightning run (dermkit.cpu_time)."""

from __future__ import annotations

import subprocess
import sys
import time
from itertools import count
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dermkit.cpu_time import PARTS, CpuTimeByPart, children_cpu_seconds


def test_children_cpu_seconds_counts_a_busy_child() -> None:
    before = children_cpu_seconds()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        deadline = time.monotonic() + 20
        while children_cpu_seconds() - before < 0.3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert children_cpu_seconds() - before >= 0.3
    finally:
        child.kill()
        child.wait()


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.layer(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_each_part_is_charged_at_its_hooks(tmp_path: Path) -> None:
    ticks = count()
    parts = CpuTimeByPart(clock=lambda: float(next(ticks)))  # every reading one "second" later
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[parts])
    trainer.fit(_Tiny(), loader, loader)
    trainer.test(trainer.lightning_module, loader, verbose=False)
    parts.switch("report")
    record = parts.record()
    assert set(record) == {*PARTS, "total", "validations"}
    assert record["validations"] == 2  # the sanity check is not one
    assert record["startup"] == 0.0  # the first reading: nothing before the fit in this test
    for part in ("sanity_check", "train", "validate", "checkpoint", "test", "report"):
        assert record[part] > 0, part
    assert record["total"] == next(ticks) - 1  # every interval charged once
