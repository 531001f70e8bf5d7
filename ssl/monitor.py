"""Monitoring during pretraining: kNN accuracy on the validation split and a collapse signal.

Every ``monitor.every_n_epochs`` epochs the backbone embeds a labelled bank (training images,
un-augmented) and the validation images; a kNN classifier on the bank predicts the validation
labels. Labels are used only here, never for training. The standard deviation of the
L2-normalised embeddings (lightly's ``std_of_l2_normalized``) is about ``1/sqrt(D)`` for spread-out
features and 0 when every image maps to the same point (collapse, which DINO on small data is
prone to); a warning is raised when it drops below ``monitor.collapse_ratio / sqrt(D)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from lightly.utils.debug import std_of_l2_normalized

from dermkit.backbones.embed import embed
from dermkit.console import console
from dermkit.metrics import accuracy, balanced_accuracy
from ssl.probe import knn_classify

Batch = tuple[torch.Tensor, torch.Tensor]  # (images (B, 3, S, S) normalised, labels (B,))


@dataclass
class MonitorConfig:
    """Monitoring section of ``ssl.pretrain``.

    Keys:
        every_n_epochs: run the kNN monitor every this many epochs (0 = never).
        knn_k: neighbours of the kNN classifier.
        knn_temperature: similarity temperature of the kNN classifier.
        max_bank: at most this many training images (a fixed random subset) form the kNN bank.
        collapse_ratio: warn when the embedding std falls below ``collapse_ratio / sqrt(D)``.
    """

    every_n_epochs: int = 1
    knn_k: int = 20
    knn_temperature: float = 0.1
    max_bank: int = 4000
    collapse_ratio: float = 0.05


class CollapseWarning(UserWarning):
    """The embeddings of different images have (nearly) collapsed to one point."""


def check_collapse(features: torch.Tensor, ratio: float, where: str = "") -> float:
    """Std of the L2-normalised (N, D) features; warns with :class:`CollapseWarning` below ``ratio / sqrt(D)``."""
    std = float(std_of_l2_normalized(features.float()))
    threshold = ratio / math.sqrt(features.shape[1])
    if std < threshold:
        message = (f"Embeddings collapsed{where}: std of normalised features {std:.2e} < {threshold:.2e} "
                   f"(healthy is about {1 / math.sqrt(features.shape[1]):.2e}). DINO: raise "
                   "dino.teacher_temp warm-up or lower optim.lr; SimCLR: check the augmentations.")
        console.print(f"[bold yellow]warning:[/] {message}", highlight=False)
        warnings.warn(message, CollapseWarning, stacklevel=2)
    return std


class SSLMonitor(pl.Callback):
    """Per-epoch kNN monitor and collapse check of ``pl_module.eval_backbone``.

    Reads ``monitor.*`` (:class:`MonitorConfig`).

    Args:
        config: the monitor section.
        bank_loader: un-augmented, normalised training images with labels (-1 where unlabelled): a
            ``DataLoader``, or resident batches (:class:`dermkit.data.resident.NormalizedBatches`).
        val_loader: the same of the validation images, or None (unlabelled data: only
            the collapse signal is computed, on the bank images).
        num_classes: C.
    """

    def __init__(self, config: MonitorConfig, bank_loader: Iterable[Batch], val_loader: Iterable[Batch] | None,
                 num_classes: int) -> None:
        self.config = config
        self.bank_loader = bank_loader
        self.val_loader = val_loader
        self.num_classes = num_classes
        self.last: dict[str, float] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = int(self.config.every_n_epochs)
        if every <= 0 or (trainer.current_epoch + 1) % every:
            return
        backbone = pl_module.eval_backbone  # type: ignore[attr-defined]
        bank, bank_labels = embed(backbone, self.bank_loader, pl_module.device)
        metrics = {"monitor/embedding_std": check_collapse(bank, self.config.collapse_ratio,
                                                           f" after epoch {trainer.current_epoch}")}
        if self.val_loader is not None and self.num_classes > 1:
            query, query_labels = embed(backbone, self.val_loader, pl_module.device)
            keep = bank_labels >= 0
            preds = knn_classify(bank[keep], bank_labels[keep], query, self.num_classes,
                                 k=self.config.knn_k, temperature=self.config.knn_temperature)
            metrics["monitor/knn_top1"] = accuracy(preds, query_labels, self.num_classes)
            metrics["monitor/knn_balanced_acc"] = balanced_accuracy(preds, query_labels, self.num_classes)
        self.last = metrics
        for name, value in metrics.items():
            pl_module.log(name, value, prog_bar=name != "monitor/embedding_std", rank_zero_only=True)
