"""Checkpoint writing that survives a kill: the replaced ``last.ckpt`` is kept as ``last.prev.ckpt``.

Lightning already writes each checkpoint through a temporary file that is moved into place, so a
kill during a save leaves the old file whole. :class:`KeepPreviousCheckpointIO` adds one more
safety for a file damaged afterwards (see :mod:`dermkit.checkpoint`): before ``last.ckpt`` is
replaced, the previous one is kept as ``last.prev.ckpt`` (a hard link renamed into place, so
``last.ckpt`` exists at every instant).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from dermkit.checkpoint import LAST, PREVIOUS, damage


class KeepPreviousCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, keeping the replaced ``last.ckpt`` as ``last.prev.ckpt``.

    Pass as ``pl.Trainer(plugins=[KeepPreviousCheckpointIO()])``. Every save, the interrupt
    callback's included, goes through it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        target = Path(path)
        if target.name == LAST and target.is_file() and damage(target) is None:
            # Link, then rename over the old copy: last.ckpt never disappears, even for an instant.
            staging = target.with_name(PREVIOUS + ".tmp")
            staging.unlink(missing_ok=True)
            try:
                os.link(target, staging)
            except OSError:  # a file system without hard links: a copy keeps the same guarantee
                shutil.copyfile(target, staging)
            os.replace(staging, target.with_name(PREVIOUS))
        super().save_checkpoint(checkpoint, path, storage_options)
