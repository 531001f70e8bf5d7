"""Image transforms for fine-tuning (torchvision v2), on the PIL images of ``CachedImageDataset``.

Dermoscopy images have no canonical orientation, so training rotates by any angle and flips both
ways; colour jitter is kept small because colour carries diagnostic information (e.g. the blue-white
veil of melanoma). The cache already stores square images at the model's input size, so there is
no resizing here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def train_transform(mean: Sequence[float], std: Sequence[float], rotation: float = 180.0,
                    jitter: float = 0.1) -> v2.Compose:
    """Augmentation for training: PIL image -> (3, S, S) normalised float tensor.

    The geometric and colour steps run on the PIL image, where they are several times faster
    than on tensors; hue is not jittered (it carries diagnostic information and is by far the
    slowest step).

    Args:
        mean: per-channel mean of the backbone's normalisation (from its card).
        std: per-channel standard deviation.
        rotation: maximum rotation in degrees (180 = any angle).
        jitter: brightness, contrast and saturation jitter.
    """
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomRotation(rotation, interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Deterministic transform for validation, test and external evaluation."""
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])
