"""Test-time augmentation: average the class probabilities over the eight symmetries of the square.

Dermoscopy images have no canonical orientation (training rotates and flips them, see
:mod:`finetune.transforms`), so the classifier's answer should not depend on which way the image
was taken. The eight views are the dihedral group D4: the four right-angle rotations of the image
and of its mirror image. Right angles and flips move pixels without resampling, so no view loses
detail. Averaging over the whole group makes the prediction exactly invariant to any of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NUM_VIEWS = 8


def dihedral_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The eight flips and right-angle rotations of a batch.

    Args:
        images: (B, 3, S, S).

    Returns:
        Eight (B, 3, S, S) tensors: rotations by 0, 90, 180, 270 degrees of ``images`` and of their
        left-right mirror images (the first view is ``images`` itself).
    """
    mirrored = images.flip(-1)
    return [torch.rot90(base, k, dims=(-2, -1)) for base in (images, mirrored) for k in range(4)]


def tta_probabilities(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Class probabilities averaged over the eight dihedral views (averaged probabilities, not logits).

    Args:
        logits_of: the classifier, (B, 3, S, S) -> logits (B, C).
        images: (B, 3, S, S), normalised as the classifier expects.

    Returns:
        (B, C) probabilities, rows summing to 1.
    """
    views = dihedral_views(images)
    logits = logits_of(torch.cat(views)).float()  # (8B, C): one forward pass over every view
    probs = logits.softmax(dim=1).reshape(NUM_VIEWS, images.shape[0], -1)  # (8, B, C)
    return probs.mean(dim=0)
