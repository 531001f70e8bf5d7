"""Which epochs of a fine-tuning run are validated (``val.every_n_epochs``, ``val.start``).

Validating every epoch is most of a small label fraction's cost: at 1% of HAM10000 an epoch trains
on 70 images and validates 1,502. :class:`ValidationSchedule` lets Lightning validate only the
epochs :func:`dermkit.validation_epochs.validated_epochs` lists, by setting the trainer's
``check_val_every_n_epoch`` at the start of each epoch to 1 (validate this one) or to a period no
epoch of the run reaches (skip it). Lightning's checkpoint callbacks read that value when they decide whether to save at
the end of the epoch or after validation, so an epoch that is not validated writes no checkpoint:
the best checkpoint is the best validated epoch, and ``last.ckpt`` the last validated one.

A skipped epoch trains exactly as it would have if validated: a validation's only effect on later
training is the seed a single-process validation loader draws from the global random generator
when it starts (``torch.utils.data.DataLoader``'s ``_base_seed``; ``data.augment_on=device`` draws
the training augmentation from that generator), and a skipped epoch makes the same draw. Loaders
with worker processes keep their iterator from the sanity check on and draw nothing more.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dermkit.validation_epochs import validated_epochs

__all__ = ["ValidationSchedule", "validated_epochs"]


class ValidationSchedule(pl.Callback):
    """Validate only the epochs in ``epochs`` (0-based), see the module's docstring.

    Args:
        epochs: the epochs to validate (:func:`validated_epochs`).
    """

    # Larger than any epoch count: (epoch + 1) % SKIP is never 0 in a run.
    SKIP = 2**31 - 1

    def __init__(self, epochs: list[int]) -> None:
        self.epochs = frozenset(epochs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.check_val_every_n_epoch = 1 if trainer.current_epoch in self.epochs else self.SKIP

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch in self.epochs:
            return
        loaders = trainer.val_dataloaders
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if isinstance(loader, DataLoader) and loader.num_workers == 0:
                # What starting the validation loader's iterator would have drawn (see the module's docstring).
                torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
