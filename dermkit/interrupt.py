"""Ctrl-C or ``kill`` during a long Lightning run: keep the steps trained so far.

Lightning's ``ModelCheckpoint`` writes ``last.ckpt`` at the end of each epoch (and every N steps
where a stage asks for it). A run stopped between two of those saves would lose the steps since the
last one; this callback writes the trainer's state to the same ``last.ckpt`` when the stop arrives,
so re-running the same command resumes from the step that was running.

Two stops are handled: Ctrl-C (``KeyboardInterrupt``) and SIGTERM, what ``kill PID`` and the
benchmark grid send. A job started in the background with ``&`` ignores Ctrl-C's SIGINT, so
SIGTERM is how it is stopped; Lightning turns it into ``SIGTERMException`` once the current batch
has finished. After any other exception the state may be broken, and the last regular checkpoint
is the safer place to resume from.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dermkit.console import console


class CheckpointOnInterrupt(pl.Callback):
    """On Ctrl-C or SIGTERM, save the full training state to ``path``; the run then exits with status
    1 (Ctrl-C, Lightning's choice) or 143 (SIGTERM, as a process killed by it).

    Args:
        path: the checkpoint the stage resumes from, usually ``<run>/checkpoints/last.ckpt``.
        resume_hint: what the user runs to resume, printed after the save.
    """

    def __init__(self, path: str | Path, resume_hint: str = "Run the same command again to resume from it.") -> None:
        self.path = Path(path)
        self.resume_hint = resume_hint

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if isinstance(exception, SIGTERMException):
            # A SystemExit without a code exits 0, which would tell a script (`train && evaluate`) that
            # the run finished.
            exception.code = 128 + signal.SIGTERM
        if trainer.is_global_zero:
            stop = "Interrupted" if isinstance(exception, KeyboardInterrupt) else "Stopped by SIGTERM"
            console.print(f"[yellow]{stop} at step {trainer.global_step}: saved {self.path}. "
                          f"{self.resume_hint}[/]")
