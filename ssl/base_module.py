"""What every SSL module shares (SimCLR, DINO, BYOL, ...): optimiser, per-step schedules, logging, channels-last.

Schedules follow the DINO code base: each is a numpy array indexed by the global step, computed
once the trainer knows how many steps the run has (``trainer.estimated_stepping_batches``), and
read at every step. Nothing is stored in a scheduler object, so a resumed run picks up the value
of its global step directly.

A training step asks the GPU for nothing (on a GPU the host then queues steps ahead of it): the
logged schedule values come from a copy of each schedule on the device (:meth:`SSLModule.log_schedule`;
a Python number logged is copied to the GPU at every step, which waits for it), nothing is on the
progress bar per step (Lightning turns such values into Python numbers at every step;
:class:`dermkit.trainer.ProgressBar` shows :attr:`SSLModule.progress_bar_keys` at logging steps), and a
non-finite loss is recorded on the device and raised at the next logging step, epoch end or
checkpoint (before it is written).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightly.utils.debug import std_of_l2_normalized
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from dermkit.augment import MultiViewAugment, seed_for_process
from dermkit.backbones import Backbone
from dermkit.config import OptimConfig
from dermkit.errors import DermkitError, did_you_mean
from dermkit.precision import float32_call
from dermkit.registry import Registry
from dermkit.trainer import is_logging_step

# (parameter groups, each with its weight_decay; base learning rate; momentum) -> optimiser (config key
# optim.name). SSLModule.on_train_batch_start replaces the learning rate with the per-step schedule's.
# A new optimiser: one factory below, decorated with ``@OPTIMIZERS.register("name")``.
OptimizerFactory = Callable[[list[dict[str, Any]], float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimiser")


@OPTIMIZERS.register("sgd")
def sgd_optimizer(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.SGD:
    """SGD with (heavy-ball) momentum."""
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


@OPTIMIZERS.register("adamw")
def adamw_optimizer(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.AdamW:
    """AdamW (``momentum`` unused: Adam's betas are torch's defaults)."""
    return torch.optim.AdamW(groups, lr=lr)


@OPTIMIZERS.register("lars")
def lars_optimizer(groups: list[dict[str, Any]], lr: float, momentum: float) -> LARS:
    """lightly's LARS (layer-wise adaptive rate scaling, You et al. 2017) with momentum."""
    return LARS(groups, lr=lr, momentum=momentum)


@dataclass
class PretrainOptimConfig(OptimConfig):
    """Optimiser section of ``ssl.pretrain`` (``lr`` and ``weight_decay``: :class:`dermkit.config.OptimConfig`).

    Keys:
        name: ``auto`` (SimCLR, BYOL: ``sgd``; DINO: ``adamw``), ``sgd``, ``adamw`` or ``lars``.
        lr: base learning rate for a batch of 256, scaled linearly by
            ``data.batch_size * devices * nodes / 256``; 0 = the method's default
            (SimCLR, BYOL 0.12, DINO 5e-4).
        weight_decay: -1 = the method's default (SimCLR, BYOL 5e-4, DINO 0.04). Not applied to
            biases and normalisation weights.
        momentum: SGD / LARS momentum.
        warmup_fraction: share of all steps spent in linear learning-rate warm-up; a cosine decay
            to ``min_lr_ratio * lr`` follows.
        min_lr_ratio: final learning rate as a share of the peak.
    """

    name: str = "auto"
    lr: float = 0.0
    weight_decay: float = -1.0
    momentum: float = 0.9
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0


def warmup_cosine_array(total_steps: int, peak: float, warmup_steps: int, end: float) -> np.ndarray:
    """(total_steps,) values: linear warm-up 0 -> ``peak``, then lightly's cosine decay to ``end``."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    warm = np.linspace(0.0, peak, warmup_steps, endpoint=False) if warmup_steps else np.zeros(0)
    decay_steps = total_steps - warmup_steps
    decay = np.array([cosine_schedule(s, decay_steps, peak, end) for s in range(decay_steps)])
    return np.concatenate([warm, decay])


def momentum_array(total_steps: int, momentum_start: float) -> np.ndarray:
    """(total_steps,) EMA momentum of a teacher / target network: lightly's cosine from ``momentum_start`` to 1."""
    return np.array([cosine_schedule(s, total_steps, momentum_start, 1.0) for s in range(total_steps)])


def _split_decay(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): biases and 1-D (normalisation) weights get no weight decay."""
    decay, no_decay = [], []
    for _, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return decay, no_decay


class SSLModule(pl.LightningModule):
    """Base class: subclasses implement :meth:`ssl_step` and :attr:`eval_backbone`.

    Args:
        backbone: the network being pretrained, (B, 3, S, S) -> (B, D).
        optim: :class:`PretrainOptimConfig`.
        batch_size: per-device batch size (for the learning-rate scaling).
        default_optimizer / default_lr / default_weight_decay: the method's defaults, used where
            ``optim`` says ``auto`` / 0 / -1.
    """

    def __init__(self, backbone: Backbone, optim: PretrainOptimConfig, batch_size: int, default_optimizer: str,
                 default_lr: float, default_weight_decay: float) -> None:
        super().__init__()
        name = default_optimizer if optim.name == "auto" else str(optim.name)
        if name not in OPTIMIZERS:
            # Not OPTIMIZERS.lookup: the message lists "auto" too.
            raise DermkitError(f"Unknown optimiser optim.name={optim.name!r}.{did_you_mean(name, OPTIMIZERS)} "
                               f"Choose auto, {', '.join(OPTIMIZERS.names())}.")
        if not 0.0 <= optim.warmup_fraction < 1.0:
            raise DermkitError(f"Config key optim.warmup_fraction must lie in [0, 1), got {optim.warmup_fraction}.")
        self.backbone = backbone
        self.optimizer_name = name
        self.base_lr = float(optim.lr) if optim.lr > 0 else default_lr
        self.weight_decay = float(optim.weight_decay) if optim.weight_decay >= 0 else default_weight_decay
        self.momentum = float(optim.momentum)
        self.warmup_fraction = float(optim.warmup_fraction)
        self.min_lr_ratio = float(optim.min_lr_ratio)
        self.batch_size = int(batch_size)
        self.lr_schedule = np.zeros(1)
        self._schedule_tables: dict[str, torch.Tensor] = {}  # logged schedules, on the device
        self._nonfinite_step: torch.Tensor | None = None  # () first step whose loss was not finite, -1: none
        self.start_step = 0  # global step at which this fit() began (> 0 when resumed)
        # data.augment_on=device: draws the views from (B, 3, S, S) uint8 batches where they are. A plain
        # object, not a submodule, so checkpoints are the same whichever path trained the network.
        self.device_augment: MultiViewAugment | None = None

    # ----------------------------------------------------------------------------------------
    # what subclasses provide
    @property
    def eval_backbone(self) -> Backbone:
        """The backbone to monitor and save (SimCLR: the trained one; DINO: the teacher)."""
        return self.backbone

    def ssl_step(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss of one batch of views.

        Args:
            views: V tensors, each (B, 3, s, s).

        Returns:
            (loss, features): the scalar loss and (B, D) backbone features of the first view
            (for the collapse signal).
        """
        raise NotImplementedError

    def build_schedules(self, total_steps: int, steps_per_epoch: int) -> None:
        """Subclasses add their own per-step arrays (momentum, temperatures) here."""

    def float32_loss(self, criterion: Callable[..., torch.Tensor], *outputs: Any, **kwargs: Any) -> torch.Tensor:
        """``criterion(*outputs, **kwargs)`` in float32, also under ``trainer.precision=bf16-mixed``
        (:func:`dermkit.precision.float32_call`)."""
        return float32_call(criterion, *outputs, device_type=self.device.type, **kwargs)

    # ----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay, no_decay = _split_decay(self)
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return OPTIMIZERS[self.optimizer_name](groups, self.base_lr, self.momentum)

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            self.to(memory_format=torch.channels_last)  # faster convolutions with (b)f16 on GPUs

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``data.augment_on=device``: (uint8 (B, 3, S, S), labels) -> (V views, labels), where the batch is."""
        if self.device_augment is None:
            return batch
        images, labels = batch
        return self.device_augment(images), labels

    # Logged values the progress bar shows during training, read at logging steps (dermkit.trainer.ProgressBar).
    progress_bar_keys = ("train/loss", "train/embedding_std_x_sqrt_d")

    def on_train_start(self) -> None:
        self._schedule_tables = {}
        self._nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.device)
        if self.device_augment is not None:
            seed_for_process(self.global_rank)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(int(self.trainer.num_training_batches), 1)
        world = self.trainer.world_size
        peak = self.base_lr * self.batch_size * world / 256.0
        self.lr_schedule = warmup_cosine_array(total, peak, round(self.warmup_fraction * total),
                                               peak * self.min_lr_ratio)
        self.build_schedules(total, per_epoch)
        self.start_step = int(self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs on resume before any training hook, also when the run is already complete.
        self.start_step = int(checkpoint.get("global_step", 0))

    def scheduled(self, schedule: np.ndarray) -> float:
        """The value of a per-step schedule at the current global step."""
        return float(schedule[min(int(self.global_step), len(schedule) - 1)])

    def log_schedule(self, name: str, schedule: np.ndarray, batch_size: int) -> None:
        """Log a per-step schedule's value at the current global step (``scheduled``), read from a copy of
        the schedule on the device made once per fit: a Python number would be copied to the GPU at
        every step, which waits for the GPU."""
        table = self._schedule_tables.get(name)
        if table is None or table.device != self.device or len(table) != len(schedule):
            table = self._schedule_tables[name] = torch.as_tensor(schedule, dtype=torch.float32, device=self.device)
        self.log(name, table[min(int(self.global_step), len(table) - 1)], batch_size=batch_size)

    def _record_nonfinite(self, loss: torch.Tensor) -> None:
        """Remember, on the device, the first step whose loss is not finite (no wait for the GPU)."""
        if self._nonfinite_step is None or self._nonfinite_step.device != loss.device:
            self._nonfinite_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = (self._nonfinite_step < 0) & ~torch.isfinite(loss.detach())
        self._nonfinite_step = torch.where(first, int(self.global_step), self._nonfinite_step)

    def check_finite_loss(self) -> None:
        """Raise if a loss so far was not finite (reads one number from the device: a wait for a GPU).

        Raises:
            FloatingPointError: naming the first such step.
        """
        if self._nonfinite_step is not None and (step := int(self._nonfinite_step)) >= 0:
            raise FloatingPointError(f"the loss was not finite at step {step}; lower optim.lr")

    def on_train_epoch_end(self) -> None:
        self.check_finite_loss()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite_loss()  # before the checkpoint is written: a resumed run must not start from NaNs

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        lr = self.scheduled(self.lr_schedule)
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = lr

    def training_step(self, batch: tuple[list[torch.Tensor], torch.Tensor], batch_idx: int) -> torch.Tensor:
        views, _ = batch  # labels are never used for training
        if self.device.type == "cuda":
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        loss, features = self.ssl_step(views)
        self._record_nonfinite(loss)
        if is_logging_step(self.trainer):  # Lightning reads the logged values now anyway
            self.check_finite_loss()
        batch_size = views[0].shape[0]
        self.log("train/loss", loss, batch_size=batch_size, sync_dist=False)
        self.log_schedule("train/lr", self.lr_schedule, batch_size)
        # Collapse signal: about 1/sqrt(D) for healthy features, 0 when every image maps to one point.
        std = std_of_l2_normalized(features.detach().float())
        self.log("train/embedding_std", std, batch_size=batch_size)
        self.log("train/embedding_std_x_sqrt_d", std * math.sqrt(features.shape[1]), batch_size=batch_size)
        return loss
