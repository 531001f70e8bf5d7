"""Fine-tuning augmentation on the device (``data.augment_on=device``).

The same operations and parameters as :func:`finetune.transforms.train_transform` (flips both
ways, right-angle turns, rotation, zoom-out, vignetting, brightness / contrast / saturation jitter, no hue, an optional random resized crop
back to the cached input size), drawn per sample on whole uint8 batches by
:class:`dermkit.augment.ViewAugment` in :meth:`finetune.module.ClassifierModule.on_after_batch_transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dermkit.augment import ViewAugment, ViewSpec

from finetune.config import FinetuneAugmentConfig


def train_device_augment(image_size: int, mean: Sequence[float], std: Sequence[float],
                         augment: FinetuneAugmentConfig) -> ViewAugment:
    """(B, 3, S, S) uint8 -> (B, 3, S, S) augmented, normalised float32 views.

    Args:
        image_size: S, the cached images' side.
        mean: per-channel mean of the backbone's normalisation (from its card).
        std: per-channel standard deviation.
        augment: crop, turns, rotation and jitter (the config's ``augment`` section); rotation and
            jitter apply to every image.
    """
    jitter = augment.jitter
    return ViewAugment(ViewSpec(size=image_size,
                                crop_scale=None if augment.crop_scale >= 1.0 else (augment.crop_scale, 1.0),
                                hflip_prob=0.5, vflip_prob=0.5, right_angles=augment.right_angles,
                                rotation_prob=1.0 if augment.rotation > 0 else 0.0, rotation_degrees=augment.rotation,
                                cj_prob=1.0, brightness=jitter, contrast=jitter, saturation=jitter,
                                zoom_out=augment.zoom_out, vignette_prob=augment.vignette,
                                mean=tuple(mean), std=tuple(std)))
