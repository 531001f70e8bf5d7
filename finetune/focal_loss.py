"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), multiclass form.

    FL(p_t) = -α_t (1 - p_t)^γ log(p_t)

where p_t is the predicted probability of the true class. The factor (1 - p_t)^γ down-weights
examples the model already gets right, so training concentrates on hard (often minority-class)
images; α_t re-weights classes. With γ = 0 and uniform α = 1 it is exactly cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_FLOOR = 1e-12


class FocalLoss(nn.Module):
    """Multiclass focal loss on logits.

    Args:
        gamma: focusing parameter γ ≥ 0 (2 in the paper).
        alpha: (C,) per-class weights α, or None for α = 1.
        reduction: ``mean`` (weighted by α like ``F.cross_entropy``: Σ loss / Σ α_t), ``sum`` or
            ``none``.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.gamma = gamma
        self.reduction = reduction
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: (B, C) unnormalised scores.
            target: (B,) true class indices.

        Returns:
            A scalar, or (B,) losses with ``reduction="none"``.
        """
        log_probs = F.log_softmax(logits.float(), dim=1)  # (B, C); float32 even under bf16 autocast
        log_pt = log_probs.gather(1, target.long()[:, None]).squeeze(1)  # (B,)
        # 1 - p_t via expm1 keeps precision near p_t = 1. The derivative of x^γ is infinite at
        # x = 0 for γ < 1, so x is clamped to a tiny floor (where clamp passes no gradient): the
        # gradient stays finite as p_t → 1. Where the floor applies, |log p_t| < 1e-12, so the loss
        # changes by a negligible amount.
        one_minus_pt = (-torch.expm1(log_pt)).clamp(min=_FLOOR)  # (B,)
        focal = one_minus_pt.pow(self.gamma)  # (B,)
        loss = -focal * log_pt  # (B,)
        weight = self.alpha[target] if self.alpha is not None else torch.ones_like(loss)  # (B,)
        loss = weight * loss
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / weight.sum()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={None if self.alpha is None else self.alpha.tolist()}"
