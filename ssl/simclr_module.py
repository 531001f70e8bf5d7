"""SimCLR (Chen et al. 2020, https://arxiv.org/abs/2002.05709) from lightly's building blocks.

backbone -> ``SimCLRProjectionHead`` -> ``NTXentLoss`` between the two views of each image. With
several devices the loss gathers the projections of every device (``gather_distributed=True``),
so each image sees ``2 * B * world_size - 2`` negatives, as in the paper's global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from dermkit.backbones import Backbone
from ssl.base_module import PretrainOptimConfig, SSLModule


@dataclass
class SimCLRConfig:
    """SimCLR section of ``ssl.pretrain``.

    Keys:
        temperature: NT-Xent temperature (0.5 suits small batches; the paper uses 0.1 with 4096).
        proj_hidden_dim: width of the projection head's hidden layer (0 = the backbone's D).
        proj_output_dim: width of the projected embedding the loss compares.
    """

    temperature: float = 0.5
    proj_hidden_dim: int = 0
    proj_output_dim: int = 128


class SimCLRModule(SSLModule):
    """SimCLR as a Lightning module.

    Reads ``simclr.*`` (:class:`SimCLRConfig`) and ``optim.*`` (:class:`PretrainOptimConfig`).

    Args:
        backbone: (B, 3, S, S) -> (B, D).
        simclr: the SimCLR section.
        optim: the optimiser section (defaults: SGD, lr 0.12 per 256 images as in lightly's benchmarks, weight
            decay 5e-4).
        batch_size: per-device batch size.
    """

    def __init__(self, backbone: Backbone, simclr: SimCLRConfig, optim: PretrainOptimConfig, batch_size: int) -> None:
        super().__init__(backbone, optim, batch_size, default_optimizer="sgd", default_lr=0.12,
                         default_weight_decay=5e-4)
        dim = backbone.feature_dim
        self.projection_head = SimCLRProjectionHead(input_dim=dim, hidden_dim=simclr.proj_hidden_dim or dim,
                                                    output_dim=simclr.proj_output_dim)
        self.criterion = NTXentLoss(temperature=simclr.temperature, gather_distributed=True)

    def ssl_step(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """NT-Xent loss of two views, each (B, 3, S, S); returns (loss, (B, D) features of view 0)."""
        if len(views) != 2:
            raise ValueError(f"SimCLR needs exactly 2 views per image, got {len(views)}")
        batch = views[0].shape[0]
        features = self.backbone(torch.cat(views))  # (2B, D): one pass over both views
        z0, z1 = self.projection_head(features).split(batch)  # (B, P) each
        return self.float32_loss(self.criterion, z0, z1), features[:batch]
