"""The Lightning classifier: a backbone, a new linear head and the transfer-learning schedule.

Schedule (one array of learning-rate factors, indexed by optimiser step):

- epochs ``[0, head_epochs)``: only the head trains; the pretrained backbone is frozen and kept in
  eval mode (its BatchNorm statistics stay those of pretraining), i.e. linear probing;
- afterwards the whole network trains, the backbone at ``lr * backbone_lr_scale``;
- AdamW, linear warm-up then cosine decay to 0 over all steps of the run.

A randomly initialised backbone has nothing to protect: the caller passes ``head_epochs=0`` and
``backbone_lr_scale=1``. With ``freeze_backbone`` every epoch is a head-only epoch and the optimiser
holds the head alone: a linear probe of any backbone, trained and scored like any other run.

Every batch is ``(images (B, 3, S, S), labels (B,), index (B,))``; ``index`` is the image's row
in the dataset, so validation and test predictions can be de-duplicated and ordered (see
:class:`dermkit.metrics.PredictionStore`). The checkpoint holds everything needed to rebuild the
classifier (architecture, stem, input size, normalisation, classes), so ``finetune.evaluate``
needs only the ``.ckpt`` file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from dermkit.augment import ViewAugment, normalize, seed_for_process
from dermkit.backbones import Backbone, build_backbone
from dermkit.metrics import PredictionStore, classification_report
from finetune.losses import build_loss
from finetune.tta import tta_probabilities

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# Scalars of the classification report logged every validation epoch (val/<name>).
LOGGED_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "auroc_macro", "ece")


def lr_factors(total_steps: int, warmup_steps: int = 0) -> np.ndarray:
    """(total_steps,) learning-rate multipliers: linear warm-up from 0, then cosine decay to 0."""
    steps = np.arange(max(total_steps, 1), dtype=np.float64)
    warmup = max(min(warmup_steps, total_steps - 1), 0)
    cosine = 0.5 * (1.0 + np.cos(math.pi * (steps - warmup) / max(total_steps - warmup, 1)))
    ramp = (steps + 1) / max(warmup, 1)
    return np.where(steps < warmup, ramp, cosine)


def _float32_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Forward pre-hook: the module's first input (B, C, H, W) in float32."""
    return (inputs[0].float(), *inputs[1:])


def batchnorm_in_float32(network: nn.Module) -> int:
    """Make every batch-norm layer of ``network`` compute in float32 under autocast; returns how many.

    Autocast runs batch norm in the dtype of its input, which after a bfloat16 convolution is
    bfloat16: the batch statistics, the normalised activations and the residual additions that
    follow are then rounded to 8 bits of mantissa. A forward pre-hook casts the input up instead;
    the next convolution casts back down. Hooks leave the state dict as it is, so checkpoints are
    interchangeable with those of a network without them.
    """
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.register_forward_pre_hook(_float32_input)
    return len(layers)


class ClassifierModule(pl.LightningModule):
    """Backbone + dropout + linear head, trained with a configurable loss.

    Args:
        classes: class names; output ``i`` is ``classes[i]``.
        architecture: backbone registry name.
        small_stem: whether the backbone uses the small-image stem.
        image_size: input side S in pixels.
        mean: per-channel normalisation mean the inputs were normalised with.
        std: per-channel normalisation standard deviation.
        init: where the backbone's weights came from (``random`` or a file path), for the record.
        loss: keyword arguments of :func:`finetune.losses.build_loss` (``name``, ``counts``,
            ``gamma``, ``weighting``, ``beta``, ``alpha``).
        lr: peak learning rate (head; backbone too when ``backbone_lr_scale`` is 1).
        backbone_lr_scale: backbone learning rate = ``lr * backbone_lr_scale``.
        weight_decay: AdamW weight decay.
        head_epochs: epochs with the backbone frozen.
        freeze_backbone: the backbone is frozen (in eval mode, batch-norm statistics included) for the
            whole run and only the head is optimised.
        batchnorm_float32: under bf16 autocast, run batch normalisation in float32 (see
            :func:`batchnorm_in_float32`).
        warmup_steps: linear warm-up steps.
        dropout: dropout probability before the head.
        color_constancy: the ``data.color_constancy`` of the training images (recorded so that
            ``finetune.evaluate`` applies the same to the images it scores).
        split_hash: the split hash of the training data (recorded so that ``finetune.evaluate``
            refuses the train/val/test split of another split, which may hold training images).
        backbone: a built (e.g. pretrained) backbone to use; None builds a random one from the
            arguments above (what loading a checkpoint does before restoring its weights).
    """

    def __init__(
        self,
        classes: list[str],
        architecture: str,
        small_stem: bool,
        image_size: int,
        mean: list[float],
        std: list[float],
        init: str = "random",
        loss: dict[str, Any] | None = None,
        lr: float = 1e-3,
        backbone_lr_scale: float = 0.1,
        weight_decay: float = 0.05,
        head_epochs: int = 0,
        warmup_steps: int = 0,
        dropout: float = 0.0,
        color_constancy: str = "none",
        split_hash: str = "",
        backbone: Backbone | None = None,
        freeze_backbone: bool = False,
        batchnorm_float32: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        self.classes = list(classes)
        self.backbone = backbone if backbone is not None else build_backbone(architecture, small_stem, image_size)
        if batchnorm_float32:
            batchnorm_in_float32(self.backbone)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.feature_dim, len(classes))
        loss_kwargs = dict(loss or {"name": "ce", "counts": [1] * len(classes)})
        self.criterion = build_loss(**loss_kwargs)
        self.val_store = PredictionStore()
        self.test_store = PredictionStore()
        self.last_val_report: dict[str, Any] | None = None
        self.test_predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # finetune.evaluate --tta: test probabilities averaged over flips and right-angle rotations.
        self.test_time_augmentation = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of images (B, 3, S, S) normalised with ``mean`` / ``std``."""
        features = self.backbone(images)  # (B, D)
        return self.head(self.dropout(features))  # (B, C)

    # -- schedule ------------------------------------------------------------------------------

    def backbone_frozen(self) -> bool:
        """Whether the current epoch trains the head only."""
        return self.hparams.freeze_backbone or self.current_epoch < self.hparams.head_epochs

    def train(self, mode: bool = True) -> ClassifierModule:
        """Lightning's train/eval switch; a backbone frozen for the whole run stays in eval mode, so that
        no training batch (nor the return from a validation epoch) updates its batch-norm statistics."""
        super().train(mode)
        if mode and self.hparams.freeze_backbone:
            self.backbone.eval()
        return self

    def on_train_epoch_start(self) -> None:
        frozen = self.backbone_frozen()
        self.backbone.requires_grad_(not frozen)
        if frozen:
            self.backbone.eval()  # keep pretrained BatchNorm statistics while probing

    # data.augment_on=device: finetune.train sets this to draw the training augmentation from (B, 3, S, S)
    # uint8 batches where they are. A plain object, not a submodule, so checkpoints hold the network alone
    # whichever path trained it.
    device_augment: ViewAugment | None = None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``data.augment_on=device``: training batches arrive as uint8 and leave augmented and normalised;
        ``resident``: validation and test batches too, and leave normalised (as ``eval_transform`` does).

        On a GPU every batch also goes channels-last, the layout of the weights (:meth:`on_fit_start`).
        """
        images, labels, index = batch
        if images.dtype == torch.uint8:
            if self.device_augment is not None and self.trainer.training:
                images = self.device_augment(images)
            else:
                images = normalize(images, self.hparams.mean, self.hparams.std)
        if images.is_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels, index

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            self.to(memory_format=torch.channels_last)  # faster convolutions with (b)f16 on GPUs

    def on_train_start(self) -> None:
        if self.device_augment is not None:
            seed_for_process(self.global_rank)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = [{"params": list(self.head.parameters()), "lr": hp.lr}]
        if not hp.freeze_backbone:  # a frozen backbone is not the optimiser's (no weight decay either)
            groups.append({"params": list(self.backbone.parameters()), "lr": hp.lr * hp.backbone_lr_scale})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        factors = lr_factors(total, hp.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: float(factors[min(step, len(factors) - 1)]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- steps ---------------------------------------------------------------------------------

    # Logged values the progress bar shows during training, read at logging steps (dermkit.trainer.ProgressBar).
    progress_bar_keys = ("train/loss",)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        logits = self(images)  # (B, C)
        loss = self.criterion(logits.float(), labels)
        # Not on the progress bar by Lightning, which would read it from the GPU at every step (a wait):
        # dermkit.trainer.ProgressBar shows progress_bar_keys at logging steps.
        self.log("train/loss", loss, batch_size=labels.shape[0])
        return loss

    def _store_batch(self, store: PredictionStore, batch: Batch, tta: bool = False) -> torch.Tensor | None:
        images, labels, index = batch
        if tta:
            store.update(index, tta_probabilities(self, images), labels)  # (B, C)
            return None
        logits = self(images).float()  # (B, C)
        store.update(index, logits.softmax(dim=1), labels)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self._store_batch(self.val_store, batch)
        labels = batch[1]
        self.log("val/loss", self.criterion(logits, labels), batch_size=labels.shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        _, probs, targets = self.val_store.compute()  # synced over processes
        self.val_store.reset()
        if targets.numel() == 0:
            return
        report = classification_report(probs, targets, self.classes)
        self.last_val_report = report
        for name in LOGGED_METRICS:
            if report[name] is not None:
                self.log(f"val/{name}", report[name], prog_bar=name == "balanced_accuracy", sync_dist=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        # Labels may be -1 (an external image of a class the model does not know): stored, not scored here.
        self._store_batch(self.test_store, batch, tta=self.test_time_augmentation)

    def on_test_epoch_end(self) -> None:
        self.test_predictions = self.test_store.compute()
        self.test_store.reset()
