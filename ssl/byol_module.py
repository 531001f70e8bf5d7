"""BYOL (Grill et al. 2020, https://arxiv.org/abs/2006.07733) from lightly's building blocks.

"Bootstrap your own latent": an online network (backbone -> ``BYOLProjectionHead`` ->
``BYOLPredictionHead``) predicts the projection that a target network (an EMA copy of the
backbone and projection head, no gradient) makes of the other view of the same image. The loss
is lightly's ``NegativeCosineSimilarity`` between prediction and target projection, averaged
over both directions (view 0 predicts view 1 and the reverse); it lies in [-1, 1], and the
paper's ``2 - 2 cos`` per direction is an affine function of it. No negatives, so nothing is
gathered across devices under DDP. The target momentum follows lightly's cosine from
``byol.momentum_start`` to 1 over the run, precomputed as an array indexed by the global step
(as DINO's teacher momentum). The online backbone is the one monitored and saved (the paper
keeps the online encoder).

Views: lightly's ``BYOLTransform`` with the dermoscopy knobs of ``augment.*``. As in the paper the
two views are asymmetric: view 0 with the blur probability ``augment.blur_prob`` (0 at
``augment.blur_off_at`` px and below) and no solarisation, view 1 with a fifth of that blur and
solarisation ``augment.solarize_prob`` (the paper: blur 1.0 and 0.1, solarisation 0 and 0.2; the
same two views as DINO's global crops here, with SimCLR's crop scale ``augment.min_scale``).

Config keys read:
    byol.proj_hidden_dim, byol.proj_output_dim, byol.pred_hidden_dim, byol.momentum_start
        (:class:`BYOLConfig`);
    optim.* (every key of :class:`ssl.base_module.PretrainOptimConfig`, through the base module; defaults:
        SGD, lr 0.12 per 256 images, weight decay 5e-4: lightly's CIFAR-10 benchmark settings for
        BYOL, 0.06 per 128 images);
    augment.* (every key of :class:`ssl.transforms.PretrainAugmentConfig`) and data.image_size (the views:
        :func:`byol_views`, :func:`byol_device_views`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

from dermkit.augment import MultiViewAugment
from dermkit.backbones import Backbone
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from ssl.base_module import PretrainOptimConfig, SSLModule, momentum_array
from ssl.device_transforms import view_spec
from ssl.transforms import PretrainAugmentConfig, blur_probability, check_augment, lightly_normalize

# Share of view 0's blur probability that view 1 gets (the paper: 1.0 and 0.1; DINO's global crops here).
SECOND_VIEW_BLUR = 0.2


@dataclass
class BYOLConfig:
    """BYOL section of ``ssl.pretrain``.

    Keys:
        proj_hidden_dim: hidden width of the projection head (paper: 4096; lightly's small-data
            examples: 1024).
        proj_output_dim: width of the projection the loss compares (paper: 256).
        pred_hidden_dim: hidden width of the prediction head (paper: 4096).
        momentum_start: target EMA momentum at step 0, rising to 1 at the last step on a cosine
            (paper: 0.996 for 1000 epochs; lightly's 100-epoch ImageNet benchmark: 0.99).
    """

    proj_hidden_dim: int = 1024
    proj_output_dim: int = 256
    pred_hidden_dim: int = 1024
    momentum_start: float = 0.99


def byol_views(aug: PretrainAugmentConfig, byol: BYOLConfig, image_size: int) -> BYOLTransform:
    """BYOL's two asymmetric views of one image (see the module doc).

    Args:
        aug: augmentation knobs.
        byol: the BYOL section (its views use no key of it; the registry passes every method its section).
        image_size: S, the side of the views.

    Returns:
        A callable mapping a PIL image to a list of two (3, S, S) float tensors.
    """
    check_augment(aug)
    blur = blur_probability(aug, image_size)
    common = dict(input_size=image_size, cj_prob=aug.cj_prob, cj_strength=1.0, cj_bright=aug.cj_bright,
                  cj_contrast=aug.cj_contrast, cj_sat=aug.cj_sat, cj_hue=aug.cj_hue, min_scale=aug.min_scale,
                  random_gray_scale=aug.gray_prob, sigmas=(aug.blur_sigma_min, aug.blur_sigma_max),
                  vf_prob=aug.vflip_prob, hf_prob=aug.hflip_prob, rr_prob=aug.rotation_prob,
                  rr_degrees=aug.rotation_degrees, normalize=lightly_normalize(IMAGENET_MEAN, IMAGENET_STD))
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(gaussian_blur=blur, solarization_prob=0.0, **common),
        view_2_transform=BYOLView2Transform(gaussian_blur=blur * SECOND_VIEW_BLUR,
                                            solarization_prob=aug.solarize_prob, **common),
    )


def byol_device_views(aug: PretrainAugmentConfig, byol: BYOLConfig, image_size: int) -> MultiViewAugment:
    """The views of :func:`byol_views` on whole batches: (B, 3, S, S) uint8 -> 2 x (B, 3, S, S) float."""
    check_augment(aug)
    blur = blur_probability(aug, image_size)
    scale = (aug.min_scale, 1.0)
    return MultiViewAugment([
        view_spec(aug, image_size, scale, blur, 0.0, IMAGENET_MEAN, IMAGENET_STD),
        view_spec(aug, image_size, scale, blur * SECOND_VIEW_BLUR, aug.solarize_prob, IMAGENET_MEAN, IMAGENET_STD),
    ])


class BYOLModule(SSLModule):
    """BYOL as a Lightning module; the online backbone is the one monitored and saved.

    Reads ``byol.*`` (:class:`BYOLConfig`) and ``optim.*`` (:class:`PretrainOptimConfig`).

    Args:
        backbone: the online backbone, (B, 3, S, S) -> (B, D); the target is a copy.
        byol: the BYOL section.
        optim: the optimiser section (defaults: SGD, lr 0.12 per 256 images, weight decay 5e-4).
        batch_size: per-device batch size.
    """

    def __init__(self, backbone: Backbone, byol: BYOLConfig, optim: PretrainOptimConfig, batch_size: int) -> None:
        super().__init__(backbone, optim, batch_size, default_optimizer="sgd", default_lr=0.12,
                         default_weight_decay=5e-4)
        dim = backbone.feature_dim
        self.projection_head = BYOLProjectionHead(input_dim=dim, hidden_dim=byol.proj_hidden_dim,
                                                  output_dim=byol.proj_output_dim)
        self.prediction_head = BYOLPredictionHead(input_dim=byol.proj_output_dim, hidden_dim=byol.pred_hidden_dim,
                                                  output_dim=byol.proj_output_dim)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projection_head)
        self.criterion = NegativeCosineSimilarity()
        self.momentum_start = float(byol.momentum_start)
        self.momentum_schedule = np.full(1, self.momentum_start)

    def build_schedules(self, total_steps: int, steps_per_epoch: int) -> None:
        self.momentum_schedule = momentum_array(total_steps, self.momentum_start)

    def ssl_step(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """BYOL loss of two views, each (B, 3, S, S); returns (loss, (B, D) online features of view 0)."""
        if len(views) != 2:
            raise ValueError(f"BYOL needs exactly 2 views per image, got {len(views)}")
        batch = views[0].shape[0]
        momentum = self.scheduled(self.momentum_schedule)
        update_momentum(self.backbone, self.target_backbone, m=momentum)
        update_momentum(self.projection_head, self.target_projection_head, m=momentum)
        images = torch.cat(views)  # (2B, 3, S, S): one pass over both views
        features = self.backbone(images)  # (2B, D)
        p0, p1 = self.prediction_head(self.projection_head(features)).split(batch)  # (B, P) each
        with torch.no_grad():
            z0, z1 = self.target_projection_head(self.target_backbone(images)).split(batch)  # (B, P) each
        loss = 0.5 * (self.float32_loss(self.criterion, p0, z1) + self.float32_loss(self.criterion, p1, z0))
        self.log_schedule("train/target_momentum", self.momentum_schedule, batch)
        return loss, features[:batch]
