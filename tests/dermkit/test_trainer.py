"""The shared trainer writes one run-folder layout, and a resumed run continues its own files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dermkit.config import TrainerConfig
from dermkit.trainer import ProgressBar, build_trainer


class TinyRegression(pl.LightningModule):
    """y = 2x with one weight; logs a training loss and a validation score to monitor."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = ((self.weight * x - y) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/score", -((self.weight * x - y) ** 2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    x = torch.linspace(-1, 1, 16)
    return DataLoader(TensorDataset(x, 2 * x), batch_size=4)


def fit(out: Path, epochs: int, resume: bool) -> tuple[pl.Trainer, str]:
    cfg = TrainerConfig(max_epochs=epochs, accelerator="cpu", devices="1", log_every_n_steps=1)
    trainer, checkpoint = build_trainer(cfg, out, monitor="val/score", enable_model_summary=False)
    ckpt = str(out / "checkpoints" / "last.ckpt") if resume else None
    trainer.fit(TinyRegression(), loader(), loader(), ckpt_path=ckpt)
    return trainer, checkpoint.best_model_path


def test_layout_and_resume_append_to_the_same_files(tmp_path: Path) -> None:
    fit(tmp_path, epochs=2, resume=False)
    with open(tmp_path / "logs" / "metrics.csv") as f:
        first = list(csv.DictReader(f))
    trainer, best = fit(tmp_path, epochs=4, resume=True)
    assert trainer.current_epoch == 4
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > len(first) and rows[: len(first)] == first  # appended, nothing lost
    assert sorted(int(r["epoch"]) for r in rows if r.get("val/score"))[-1] == 3
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert "checkpoints/last.ckpt" in files and Path(best).name.startswith("best-epoch")
    assert any(f.startswith("logs/tensorboard/events.out") for f in files), files
    assert not [f for f in files if "version_" in f or "-v1" in f], files


class WorseEachEpoch(TinyRegression):
    """Its monitored score falls every epoch: only epoch 0 is ever the best."""

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/score", -float(self.current_epoch))


def test_last_checkpoint_follows_every_epoch_even_without_a_new_best(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_epochs=3, accelerator="cpu", devices="1", log_every_n_steps=1)
    trainer, checkpoint = build_trainer(cfg, tmp_path, monitor="val/score", enable_model_summary=False)
    trainer.fit(WorseEachEpoch(), loader(), loader())
    assert Path(checkpoint.best_model_path).name == "best-epoch00.ckpt"

    def step(name: str) -> int:
        return int(torch.load(tmp_path / "checkpoints" / name, map_location="cpu", weights_only=False)["global_step"])

    # 4 steps per epoch: last.ckpt was written at the ends of epochs 1 and 2 too, which set no new best
    assert step("last.ckpt") == 12 and step("last.prev.ckpt") == 8


def test_a_step_triggered_run_also_saves_its_epoch_ends(tmp_path: Path) -> None:
    """every_n_train_steps=3 over 2 epochs of 4 steps: the final state (step 8) is in last.ckpt."""
    cfg = TrainerConfig(max_epochs=2, accelerator="cpu", devices="1", log_every_n_steps=1)
    trainer, _ = build_trainer(cfg, tmp_path, every_n_train_steps=3, enable_model_summary=False)
    trainer.fit(TinyRegression(), loader(), loader())
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 8


class StepCounter(TinyRegression):
    """Logs its step number as ``train/step`` (no ``prog_bar``) and names it for the progress bar."""

    progress_bar_keys = ("train/step",)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.log("train/step", torch.tensor(float(self.global_step)))
        return super().training_step(batch, batch_idx)


class BarReader(pl.Callback):
    """What the progress bar shows at each training batch's end (called before the bar's own hook)."""

    def __init__(self) -> None:
        self.shown: list[float | None] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        bar = next(c for c in trainer.callbacks if isinstance(c, ProgressBar))
        self.shown.append(bar._shown.get("train/step"))


def test_progress_bar_reads_the_named_values_at_logging_steps_only(tmp_path: Path) -> None:
    """A value read from a GPU waits for it: the bar reads the module's progress_bar_keys from the logged
    values every log_every_n_steps steps (and on its first refresh), keeping them in between."""
    reader = BarReader()
    trainer, _ = build_trainer(TrainerConfig(max_epochs=-1, max_steps=7, accelerator="cpu", log_every_n_steps=3),
                               tmp_path, callbacks=[reader])
    trainer.fit(StepCounter(), loader())
    # The reader runs before the bar: entry k is what the bar showed after batch k - 1. The bar read the
    # value at its first refresh (step 0) and at logging steps 3 and 6 (values 2 and 5), nowhere else
    # (not at the epoch boundary after batch 4 either).
    assert reader.shown == [None, 0.0, 0.0, 2.0, 2.0, 2.0, 5.0]


def test_build_trainer_warns_of_bf16_without_bfloat16_instructions(tmp_path: Path, monkeypatch, capsys) -> None:
    import dermkit.precision as precision

    monkeypatch.setattr(precision, "cpu_runs_bf16_natively", lambda: False)
    for value in ("32-true", "bf16-mixed"):
        build_trainer(TrainerConfig(accelerator="cpu", devices="1", precision=value), tmp_path / value)
        printed = " ".join(capsys.readouterr().err.split())
        assert ("without bfloat16 instructions" in printed) == (value == "bf16-mixed"), value
