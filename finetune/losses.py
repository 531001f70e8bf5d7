"""The loss registry: ``build_loss(name, ...)`` for ``focal``, ``ce`` and ``class_balanced``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dermkit.errors import DermkitError, did_you_mean
from finetune.class_balanced_loss import ClassBalancedLoss
from finetune.class_weights import class_weights
from finetune.focal_loss import FocalLoss

LOSSES = ("focal", "ce", "class_balanced")


def check_label_smoothing(name: str, label_smoothing: float) -> None:
    """Refuse label smoothing outside [0, 1) or with a loss other than ``ce``.

    Raises:
        DermkitError: naming ``loss.label_smoothing`` and what to set instead.
    """
    if not 0 <= label_smoothing < 1:
        raise DermkitError(f"loss.label_smoothing={label_smoothing} must lie in [0, 1) (0: one-hot targets).")
    if label_smoothing and name != "ce":
        raise DermkitError(f"loss.label_smoothing={label_smoothing} works with loss.name=ce only, not {name!r}: "
                           "set loss.name=ce, or loss.label_smoothing=0.")


def build_loss(name: str, counts: Sequence[int], gamma: float = 2.0, weighting: str = "none",
               beta: float = 0.999, alpha: Sequence[float] = (), label_smoothing: float = 0.0) -> nn.Module:
    """A loss module mapping (logits (B, C), target (B,)) to a scalar.

    Args:
        name: ``focal``, ``ce`` or ``class_balanced``.
        counts: (C,) training images per class (for the class weights).
        gamma: focal γ (``focal``; ``class_balanced`` is focal when γ > 0).
        weighting: per-class α of ``focal`` / ``ce`` (see :func:`finetune.class_weights.class_weights`).
        beta: β of the effective number of samples.
        alpha: explicit weights for ``weighting=given``.
        label_smoothing: ``ce`` only: probability mass spread uniformly over the classes in the target.

    Raises:
        DermkitError: unknown name or weighting, weights that do not fit the classes, or label
            smoothing that :func:`check_label_smoothing` refuses.
    """
    check_label_smoothing(name, label_smoothing)
    if name == "class_balanced":
        return ClassBalancedLoss(counts, beta=beta, gamma=gamma)
    weights = class_weights(weighting, counts, beta=beta, given=alpha)
    if name == "focal":
        return FocalLoss(gamma=gamma, alpha=weights)
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    raise DermkitError(f"Unknown loss.name {name!r}.{did_you_mean(name, LOSSES)} Choose one of {', '.join(LOSSES)}.")
