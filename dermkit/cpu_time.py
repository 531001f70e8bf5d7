"""Where a training run's CPU time goes: process CPU seconds per part of a Lightning run.

On a shared CPU the wall time of a run says more about its neighbours than about the run, so the
parts are timed in CPU seconds of the process *and* of its live child processes (data-loader
workers), read from ``/proc``; children that have exited and been reaped are counted by
:func:`os.times`. On a system without ``/proc`` the children that are still running are missed.

Parts (:class:`CpuTimeByPart`):

- ``startup``: from the process's start to ``trainer.fit`` (imports, data preparation, model);
- ``sanity_check``: Lightning's validation batches before training;
- ``train``: training epochs (steps, data loading, logging);
- ``validate``: the validation epochs during training;
- ``checkpoint``: writing checkpoints (from Lightning's ``on_save_checkpoint`` to the next hook);
- ``test``: the test epoch;
- ``report``: what the caller charges to it with :meth:`CpuTimeByPart.switch` (``finetune.train``: the
  test split's HTML report and figures);
- ``other``: the rest inside ``fit`` and ``test`` (set-up, loading the best checkpoint, epoch ends).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

PARTS = ("startup", "sanity_check", "train", "validate", "checkpoint", "test", "report", "other")
_PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 on), or None if unreadable."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:  # exited in between, or no /proc
        return None
    return text[text.rfind(")") + 2:].split()  # the name may hold spaces and parentheses


def children_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of the live child processes of ``pid`` (default: this process),
    including what their own reaped children used."""
    pid = os.getpid() if pid is None else pid
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        entries = [e.name for e in _PROC.iterdir() if e.name.isdigit()]
    except OSError:
        return 0.0
    for name in entries:
        fields = _stat_fields(name)
        # fields[1] is the parent pid (stat field 4); utime, stime, cutime, cstime are fields 14-17.
        if fields is not None and len(fields) > 14 and int(fields[1]) == pid:
            total += sum(int(v) for v in fields[11:15])
    return total / ticks


def process_cpu_seconds() -> float:
    """CPU seconds used so far by this process, its reaped children and its live children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system + children_cpu_seconds()


class CpuTimeByPart(pl.Callback):
    """Charges the CPU time of a ``fit`` and ``test`` to :data:`PARTS`, switching at Lightning's hooks.

    Lightning calls its checkpoint callbacks after every other callback, so a checkpoint written at an
    epoch end is timed from its ``on_save_checkpoint`` to the next hook of this callback.

    Args:
        clock: cumulative CPU seconds (a fake clock in tests).

    Attributes:
        seconds: CPU seconds per part (:data:`PARTS`).
        validations: validation epochs run during training (the sanity check not counted).
    """

    def __init__(self, clock: Callable[[], float] = process_cpu_seconds) -> None:
        self.clock = clock
        self.seconds = {part: 0.0 for part in PARTS}
        self.validations = 0
        self._part = ""
        self._since = 0.0

    def switch(self, part: str) -> None:
        """Charge the time since the last switch to the current part and start timing ``part``."""
        now = self.clock()
        if self._part:
            self.seconds[self._part] += now - self._since
        self._part, self._since = part, now

    def record(self) -> dict[str, float]:
        """The seconds per part (what ``metrics.json`` records), rounded, with their ``total``."""
        if self._part:
            self.switch(self._part)  # charge the time up to now
        parts = {part: round(seconds, 2) for part, seconds in self.seconds.items()}
        return {**parts, "total": round(sum(self.seconds.values()), 2), "validations": self.validations}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._part:  # the first fit: everything before it is start-up
            self.seconds["startup"] = self.clock()
            self._part, self._since = "other", self.seconds["startup"]
        else:
            self.switch("other")

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("sanity_check")

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("other")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("train")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1
        self.switch("sanity_check" if trainer.sanity_checking else "validate")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("sanity_check" if trainer.sanity_checking else "other")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.switch("checkpoint")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("other")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("other")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.switch("other")
