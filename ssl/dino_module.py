"""DINO (Caron et al. 2021, https://arxiv.org/abs/2104.14294) from lightly's building blocks.

A student (backbone + ``DINOProjectionHead``) learns to match an EMA teacher's sharpened, centred
output (``DINOLoss``) across multi-crop views: the teacher sees the two global crops, the student
all crops. Per-step schedules: teacher momentum follows a cosine from ``momentum_start`` to 1,
the teacher temperature warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp``. The
loss's centre is averaged across devices by lightly (``all_reduce``) under DDP.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from dermkit.backbones import Backbone
from dermkit.errors import DermkitError
from ssl.base_module import PretrainOptimConfig, SSLModule, momentum_array


@dataclass
class DINOConfig:
    """DINO section of ``ssl.pretrain``.

    Keys:
        head_hidden_dim: hidden width of the projection head (paper: 2048).
        head_bottleneck_dim: bottleneck width before the weight-normalised last layer.
        output_dim: K, number of prototypes (paper: 65536; far fewer suit small data).
        batch_norm_head: batch norm in the head (the paper's ResNet recipe uses it).
        norm_last_layer: keep the last layer's weight norm fixed (more stable).
        freeze_last_layer_epochs: epochs during which the last layer gets no gradient.
        student_temp: student softmax temperature.
        teacher_temp: teacher temperature after warm-up.
        warmup_teacher_temp: teacher temperature at step 0.
        warmup_teacher_temp_epochs: epochs of linear teacher-temperature warm-up.
        center_momentum: EMA momentum of the teacher centre.
        momentum_start: teacher EMA momentum at step 0 (cosine to 1 at the last step).
        n_local_views: local crops per image.
        local_crop_size: side of local crops in px (0 = 3/7 of ``data.image_size``, rounded to 8,
            as 96 is of 224).
        global_crop_min_scale: smallest global crop area as a share of the image.
        local_crop_min_scale: smallest local crop area.
        local_crop_max_scale: largest local crop area.
    """

    head_hidden_dim: int = 1024
    head_bottleneck_dim: int = 256
    output_dim: int = 4096
    batch_norm_head: bool = False
    norm_last_layer: bool = True
    freeze_last_layer_epochs: int = 1
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    momentum_start: float = 0.996
    n_local_views: int = 6
    local_crop_size: int = 0
    global_crop_min_scale: float = 0.4
    local_crop_min_scale: float = 0.05
    local_crop_max_scale: float = 0.4


def local_crop_side(dino: DINOConfig, image_size: int) -> int:
    """``dino.local_crop_size``, or 3/7 of the image side rounded to a multiple of 8 (at least 8)."""
    if dino.local_crop_size:
        return int(dino.local_crop_size)
    return max(8, int(round(image_size * 3 / 7 / 8)) * 8)


def teacher_temp_array(total_steps: int, steps_per_epoch: int, dino: DINOConfig) -> np.ndarray:
    """(total_steps,) teacher temperature: linear warm-up, then constant."""
    warmup = min(int(dino.warmup_teacher_temp_epochs) * steps_per_epoch, total_steps)
    return np.concatenate([np.linspace(dino.warmup_teacher_temp, dino.teacher_temp, warmup),
                           np.full(total_steps - warmup, dino.teacher_temp)])


class DINOModule(SSLModule):
    """DINO as a Lightning module; the teacher backbone is the one monitored and saved.

    Reads ``dino.*`` (:class:`DINOConfig`) and ``optim.*`` (:class:`PretrainOptimConfig`; defaults: AdamW,
    lr 5e-4 per 256 images, weight decay 0.04).

    Args:
        backbone: the student backbone, (B, 3, S, S) -> (B, D); the teacher is a copy.
        dino: the DINO section.
        optim: the optimiser section.
        batch_size: per-device batch size.
    """

    def __init__(self, backbone: Backbone, dino: DINOConfig, optim: PretrainOptimConfig, batch_size: int) -> None:
        super().__init__(backbone, optim, batch_size, default_optimizer="adamw", default_lr=5e-4,
                         default_weight_decay=0.04)
        if backbone.name == "vit_s16" and local_crop_side(dino, backbone.image_size) != backbone.image_size:
            raise DermkitError("vit_s16 is built for one input size, so DINO's local crops must match it: set "
                               f"dino.local_crop_size={backbone.image_size} or dino.n_local_views=0.")
        dim = backbone.feature_dim

        def head() -> DINOProjectionHead:
            return DINOProjectionHead(input_dim=dim, hidden_dim=dino.head_hidden_dim,
                                      bottleneck_dim=dino.head_bottleneck_dim, output_dim=dino.output_dim,
                                      batch_norm=dino.batch_norm_head,
                                      freeze_last_layer=dino.freeze_last_layer_epochs,
                                      norm_last_layer=dino.norm_last_layer)

        self.head = head()
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = head()
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=dino.output_dim, warmup_teacher_temp=dino.warmup_teacher_temp,
                                  teacher_temp=dino.teacher_temp, warmup_teacher_temp_epochs=0,
                                  student_temp=dino.student_temp, center_momentum=dino.center_momentum)
        self.dino = dino
        self.momentum_schedule = np.ones(1)
        self.teacher_temp_schedule = np.full(1, dino.teacher_temp)

    @property
    def eval_backbone(self) -> Backbone:
        return self.teacher_backbone

    def build_schedules(self, total_steps: int, steps_per_epoch: int) -> None:
        self.momentum_schedule = momentum_array(total_steps, self.dino.momentum_start)
        self.teacher_temp_schedule = teacher_temp_array(total_steps, steps_per_epoch, self.dino)

    def _forward_by_size(self, backbone: Backbone, head: DINOProjectionHead,
                         views: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run views of equal size as one batch; returns per-view (B, K) outputs and (B, D) features of view 0."""
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(views)
        first = torch.empty(0)
        for size in sorted({v.shape[-1] for v in views}, reverse=True):
            idx = [i for i, v in enumerate(views) if v.shape[-1] == size]
            features = backbone(torch.cat([views[i] for i in idx]))  # (len(idx) * B, D)
            if 0 in idx:
                first = features[: views[0].shape[0]]
            for i, out in zip(idx, head(features).chunk(len(idx))):
                outputs[i] = out  # (B, K)
        return outputs, first

    def ssl_step(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """DINO loss of 2 global (B, 3, S, S) + L local (B, 3, s, s) views; returns (loss, (B, D) student features)."""
        if len(views) < 2:
            raise ValueError(f"DINO needs at least 2 global views per image, got {len(views)}")
        momentum = self.scheduled(self.momentum_schedule)
        update_momentum(self.backbone, self.teacher_backbone, m=momentum)
        update_momentum(self.head, self.teacher_head, m=momentum)
        with torch.no_grad():
            teacher_out, _ = self._forward_by_size(self.teacher_backbone, self.teacher_head, views[:2])
        student_out, features = self._forward_by_size(self.backbone, self.head, views)
        teacher_temp = self.scheduled(self.teacher_temp_schedule)
        loss = self.float32_loss(self.criterion, teacher_out, student_out, teacher_temp=teacher_temp)
        self.log_schedule("train/teacher_momentum", self.momentum_schedule, views[0].shape[0])
        self.log_schedule("train/teacher_temp", self.teacher_temp_schedule, views[0].shape[0])
        return loss, features

    def on_after_backward(self) -> None:
        self.head.cancel_last_layer_gradients(current_epoch=self.current_epoch)
