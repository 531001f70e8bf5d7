"""Class-balanced loss (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019).

Each class's loss is weighted by the inverse of its effective number of samples,
E_n = (1 - β^n) / (1 - β), normalised so the weights sum to the number of classes:

    CB(p, y) = (1 - β) / (1 - β^{n_y}) · L(p, y)

The paper applies it to softmax cross-entropy, sigmoid or focal loss; here ``L`` is softmax
cross-entropy (γ = 0) or the focal loss (γ > 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from finetune.class_weights import effective_number_weights
from finetune.focal_loss import FocalLoss


class ClassBalancedLoss(nn.Module):
    """Cross-entropy or focal loss weighted by the inverse effective number of samples per class.

    Args:
        counts: (C,) training images per class.
        beta: β in [0, 1) (0.999 by default, as in the paper for long-tailed CIFAR).
        gamma: focal γ; 0 for class-balanced softmax cross-entropy.
    """

    def __init__(self, counts: Sequence[int] | torch.Tensor, beta: float = 0.999, gamma: float = 0.0) -> None:
        super().__init__()
        self.beta = beta
        # The paper normalises Σ_c w_c = C; the weighted-mean reduction divides by Σ w_{y_i}.
        self.loss = FocalLoss(gamma=gamma, alpha=effective_number_weights(counts, beta), reduction="mean")

    @property
    def weights(self) -> torch.Tensor:
        """(C,) the class weights."""
        return self.loss.alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of a batch: logits (B, C), target (B,)."""
        return self.loss(logits, target)
