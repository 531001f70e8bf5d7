"""Ctrl-C during a long Lightning run: keep the steps trained so far.

Lightning's ``ModelCheckpoint`` writes ``last.ckpt`` at the end of each epoch (and every N steps
where a stage asks for it). A run stopped with Ctrl-C between two of those saves would lose the
steps since the last one; this callback writes the trainer's state to the same ``last.ckpt`` when
the interrupt arrives, so re-running the same command resumes from the step that was running.
Only ``KeyboardInterrupt`` is handled: after any other exception the state may be broken, and the
last regular checkpoint is the safer place to resume from.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from dermkit.console import console


class CheckpointOnInterrupt(pl.Callback):
    """On Ctrl-C, save the full training state to ``path`` (Lightning then exits with status 1).

    Args:
        path: the checkpoint the stage resumes from, usually ``<run>/checkpoints/last.ckpt``.
        resume_hint: what the user runs to resume, printed after the save.
    """

    def __init__(self, path: str | Path, resume_hint: str = "Run the same command again to resume from it.") -> None:
        self.path = Path(path)
        self.resume_hint = resume_hint

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            console.print(f"[yellow]Interrupted at step {trainer.global_step}: saved {self.path}. "
                          f"{self.resume_hint}[/]")
