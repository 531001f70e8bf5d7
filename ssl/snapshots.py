"""Backbone snapshots during pretraining, for curves of probe accuracy against epoch.

``last.ckpt`` is overwritten as a run goes on, so a long run would otherwise keep only its final
backbone. Every ``snapshot_every_n_epochs`` epochs this callback writes the evaluation backbone as
``<run>/snapshots/epoch{NNN}.safetensors`` with its card, in the same format as the run's final
``backbone.safetensors``: ``ssl.evaluate`` and the pretraining-curve script read them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

from dermkit.backbones import BackboneCard, save_backbone


class BackboneSnapshots(pl.Callback):
    """Save ``pl_module.eval_backbone`` every ``every_n_epochs`` epochs (rank 0 only).

    Args:
        folder: where the snapshots go (usually ``<run>/snapshots``).
        every_n_epochs: snapshot period in epochs (0 = never).
        make_card: epochs done, steps done -> the card written beside the weights.
    """

    def __init__(self, folder: str | Path, every_n_epochs: int,
                 make_card: Callable[[int, int], BackboneCard]) -> None:
        self.folder = Path(folder)
        self.every_n_epochs = every_n_epochs
        self.make_card = make_card

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epochs_done = trainer.current_epoch + 1
        if self.every_n_epochs <= 0 or epochs_done % self.every_n_epochs or not trainer.is_global_zero:
            return
        # save_backbone copies the weights to the CPU itself; the training module stays where it is.
        save_backbone(self.folder / f"epoch{epochs_done:03d}.safetensors",
                      pl_module.eval_backbone,  # type: ignore[attr-defined]
                      self.make_card(epochs_done, int(trainer.global_step)))
