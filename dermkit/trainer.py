"""The one Lightning trainer of every training stage: logs, checkpoints, progress bar, interrupt save.

``ssl.pretrain``, ``synth.train`` and ``finetune.train`` build their trainer here, so a run folder
looks the same whichever stage wrote it::

    checkpoints/last.ckpt          what a re-run resumes from (dermkit.resume): at each epoch end, and
                                   every ``every_n_train_steps`` optimiser steps, and on Ctrl-C
    checkpoints/last.prev.ckpt     the one before, in case the machine died while writing last.ckpt
    checkpoints/best-epochNN.ckpt  the best epoch by ``monitor`` (stages with a validation metric)
    logs/metrics.csv               every logged value; a resumed run appends to it
    logs/tensorboard/              the same for TensorBoard
    progress.json                  optimiser steps done of those planned (dermkit.progress_file)

Every checkpoint also holds the random generators' state (dermkit.rng_state), so that a resumed run
goes on drawing instead of replaying the draws it made after its seed.

Versioned folders (``version_N``, ``last-v1.ckpt``) are switched off on purpose: a resumed run
continues its own files instead of starting a second set beside them.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from dermkit.checkpoint_io import KeepPreviousCheckpointIO
from dermkit.config import TrainerConfig, trainer_kwargs
from dermkit.console import console
from dermkit.interrupt import CheckpointOnInterrupt
from dermkit.precision import slow_bf16_warning
from dermkit.progress_file import write_progress
from dermkit.rng_state import RngStateInCheckpoint


# Often enough for a person looking in, rare enough to cost nothing beside a training step.
PROGRESS_EVERY_S = 10.0


def is_logging_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the logged values at the end of the current training batch (every
    ``trainer.log_every_n_steps`` steps); True when the trainer cannot tell."""
    try:
        return bool(trainer._logger_connector.should_update_logs)
    except AttributeError:  # another Lightning version: read the values at every step, as Lightning does
        return True


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar without the logger-version field (the loggers use fixed names).

    During training it shows the logged values the module names in ``progress_bar_keys`` (its
    per-step values, logged without ``prog_bar``), read at the steps Lightning writes its logs
    (``trainer.log_every_n_steps``) and kept in between. Reading a value computed on a GPU waits for
    the GPU: at every step that would stall the host instead of letting it queue the next steps
    (Lightning reads every ``prog_bar`` value at every step, hence no ``prog_bar`` on per-step values).
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, Any] = {}

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        if trainer.training and self._shown and not is_logging_step(trainer):
            return self._shown
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for key in getattr(pl_module, "progress_bar_keys", ()):
            value = trainer.logged_metrics.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                metrics[key] = float(value)
        self._shown = metrics
        return metrics


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it appends to an existing ``metrics.csv``.

    Lightning's writer deletes the file of a fixed-version folder when it starts, so a resumed run
    would lose the log of every epoch before the resume.
    """

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                # The known columns: a new one widens the header and keeps the old rows.
                self.metrics_keys = next(csv.reader(file), [])


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see :class:`_AppendingWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class LastAtEpochEnd(pl.Callback):
    """Save the training state to ``path`` at every epoch end that the step trigger did not save.

    Args:
        path: ``<run>/checkpoints/last.ckpt``.
        every_n_train_steps: the step trigger of the run's last-checkpoint callback.
    """

    def __init__(self, path: Path, every_n_train_steps: int) -> None:
        self.path = path
        self.every_n_train_steps = every_n_train_steps

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step % self.every_n_train_steps:
            trainer.save_checkpoint(self.path)


class ProgressFileCallback(pl.Callback):
    """Writes the optimiser steps done and planned to ``progress.json`` (:mod:`dermkit.progress_file`).

    The total is Lightning's ``estimated_stepping_batches`` (``max_steps``, or ``max_epochs`` times
    the optimiser steps of an epoch); 0 when the run has no end. Only the global-zero process
    writes, so a DDP run keeps one file.

    Args:
        folder: the run folder.
        every_s: seconds between writes during training (the end of training always writes).
    """

    def __init__(self, folder: Path, every_s: float = PROGRESS_EVERY_S) -> None:
        self.folder = folder
        self.every_s = every_s
        self._last_write = -math.inf

    def _write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.estimated_stepping_batches
        write_progress(self.folder, trainer.global_step, int(total) if math.isfinite(total) else 0, "steps")
        self._last_write = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if time.monotonic() - self._last_write >= self.every_s:
            self._write(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)


def run_loggers(out_dir: Path) -> list[CSVLogger | TensorBoardLogger]:
    """CSV (``logs/metrics.csv``) and TensorBoard (``logs/tensorboard/``) loggers of a run folder."""
    return [AppendingCSVLogger(str(out_dir), name="", version="logs"),
            TensorBoardLogger(str(out_dir / "logs"), name="", version="tensorboard", default_hp_metric=False)]


# The keys of the shared trainer section that say where and how a model runs, not how long it trains.
DEVICE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def device_kwargs(cfg: TrainerConfig) -> dict[str, Any]:
    """``pl.Trainer`` arguments of a scoring-only trainer (``trainer.test``): device, strategy, precision."""
    return {k: v for k, v in trainer_kwargs(cfg).items() if k in DEVICE_KEYS}


def build_trainer(cfg: TrainerConfig, out_dir: Path, *, monitor: str = "", every_n_train_steps: int = 0,
                  callbacks: Sequence[pl.Callback] = (), **trainer_args: Any) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A ``pl.Trainer`` writing the run folder layout of this module.

    Args:
        cfg: the shared trainer section (accelerator, devices, strategy, precision, epochs, steps).
        out_dir: the run folder.
        monitor: logged metric whose maximum picks ``checkpoints/best-epochNN.ckpt``; empty: no best
            checkpoint, only ``last.ckpt``.
        every_n_train_steps: also save ``last.ckpt`` every this many optimiser steps (long epochs);
            0: at epoch ends only.
        callbacks: the stage's own callbacks, called before the progress bar.
        **trainer_args: further ``pl.Trainer`` arguments; they override the shared section's.

    Returns:
        (trainer, checkpoint callback): the best-checkpoint callback when ``monitor`` is set (its
        ``best_model_path`` names the best checkpoint), else the one writing ``last.ckpt``.
    """
    folder = out_dir / "checkpoints"
    # last.ckpt has a callback of its own (the newest checkpoint, no metric): with ``save_last=True``
    # Lightning (2.6) refreshes last.ckpt only at steps where it also saves a best checkpoint, so an
    # epoch that did not improve the monitored metric would leave last.ckpt behind and a resumed run
    # would train that epoch again.
    last = ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1,
                           every_n_train_steps=every_n_train_steps or None, enable_version_counter=False)
    best = ModelCheckpoint(dirpath=folder, filename="best-epoch{epoch:02d}", auto_insert_metric_name=False,
                           monitor=monitor, mode="max", save_top_k=1, enable_version_counter=False) if monitor else None
    on_interrupt = CheckpointOnInterrupt(folder / "last.ckpt")
    # A ModelCheckpoint takes one trigger; with a step trigger, epoch ends (the run's last step among
    # them) are saved here, so that a finished run's last.ckpt is its final state.
    at_epoch_end = [LastAtEpochEnd(folder / "last.ckpt", every_n_train_steps)] if every_n_train_steps else []
    shared = trainer_kwargs(cfg)
    if warning := slow_bf16_warning(shared["precision"], cfg.accelerator):
        console.print(f"[yellow]warning:[/] {warning}")
    kwargs = {**shared, "default_root_dir": str(out_dir), "logger": run_loggers(out_dir),
              "callbacks": [*([best] if best else []), last, *at_epoch_end, on_interrupt, *callbacks,
                            ProgressFileCallback(out_dir), RngStateInCheckpoint(), ProgressBar()],
              "plugins": [KeepPreviousCheckpointIO()], **trainer_args}
    return pl.Trainer(**kwargs), best or last
