"""The loss registry: ``build_loss(name, ...)`` for ``focal``, ``ce`` and ``class_balanced``.

A new loss: one factory ``LossSettings -> nn.Module`` below, decorated with ``@LOSSES.register("name")``;
``loss.name`` accepts it and ``--loss`` lists it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dermkit.errors import DermkitError
from dermkit.registry import Registry
from finetune.class_balanced_loss import ClassBalancedLoss
from finetune.class_weights import class_weights
from finetune.focal_loss import FocalLoss


@dataclass(frozen=True)
class LossSettings:
    """What a loss factory reads: the ``loss.*`` keys (see :class:`finetune.config.LossConfig`) and the counts.

    Attributes:
        counts: (C,) training images per class (for the class weights).
        gamma: focal γ.
        weighting: per-class α of ``focal`` / ``ce`` (:func:`finetune.class_weights.class_weights`).
        beta: β of the effective number of samples.
        alpha: explicit weights for ``weighting=given``.
        label_smoothing: ``ce`` only: probability mass spread uniformly over the classes.
    """

    counts: Sequence[int]
    gamma: float
    weighting: str
    beta: float
    alpha: Sequence[float]
    label_smoothing: float

    def class_weights(self) -> torch.Tensor | None:
        """(C,) per-class weights of ``weighting``, or None for ``none``."""
        return class_weights(self.weighting, self.counts, beta=self.beta, given=self.alpha)


LossFactory = Callable[[LossSettings], nn.Module]
# In registration order: focal (the default), ce, class_balanced.
LOSSES: Registry[LossFactory] = Registry("loss")


@LOSSES.register("focal")
def _focal(settings: LossSettings) -> nn.Module:
    return FocalLoss(gamma=settings.gamma, alpha=settings.class_weights())


@LOSSES.register("ce")
def _cross_entropy(settings: LossSettings) -> nn.Module:
    return nn.CrossEntropyLoss(weight=settings.class_weights(), label_smoothing=settings.label_smoothing)


@LOSSES.register("class_balanced")
def _class_balanced(settings: LossSettings) -> nn.Module:
    # Its own effective-number weights: loss.weighting does not apply.
    return ClassBalancedLoss(settings.counts, beta=settings.beta, gamma=settings.gamma)


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
        name: a name of :data:`LOSSES` (``focal``, ``ce``, ``class_balanced``).
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
    factory = LOSSES.lookup(name, key="loss.name")
    return factory(LossSettings(counts=counts, gamma=gamma, weighting=weighting, beta=beta, alpha=alpha,
                                label_smoothing=label_smoothing))
