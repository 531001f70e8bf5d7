"""Image transforms for fine-tuning (torchvision v2), on the PIL images of ``CachedImageDataset``.

Dermoscopy images have no canonical orientation, so training flips both ways and can turn by right
angles (``augment.right_angles``) or rotate by any angle (``augment.rotation``, black corners); colour
jitter is kept small because colour carries diagnostic information (e.g. the blue-white
veil of melanoma). The cache already stores square images at the model's input size; the optional
random resized crop (``augment.crop_scale`` < 1) resizes its box back to that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from finetune.config import AugmentConfig


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float], augment: AugmentConfig) -> v2.Compose:
    """Augmentation for training: PIL image -> (3, S, S) normalised float tensor.

    The geometric and colour steps run on the PIL image, where they are several times faster
    than on tensors; hue is not jittered (it carries diagnostic information and is by far the
    slowest step).

    Args:
        image_size: side of the cached images and of the output.
        mean: per-channel mean of the backbone's normalisation (from its card).
        std: per-channel standard deviation.
        augment: crop, turns, rotation and jitter (the config's ``augment`` section). Right-angle
            turns are exact here: PIL transposes a square image, no black corners.
    """
    crop = ([] if augment.crop_scale >= 1.0
            else [v2.RandomResizedCrop(image_size, scale=(augment.crop_scale, 1.0))])
    turn = ([v2.RandomChoice([v2.RandomRotation((angle, angle)) for angle in (0, 90, 180, 270)])]
            if augment.right_angles else [])
    jitter = augment.jitter
    return v2.Compose([
        *crop,
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        *turn,
        v2.RandomRotation(augment.rotation, interpolation=v2.InterpolationMode.BILINEAR),
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
