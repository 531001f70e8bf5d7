"""Fine-tuning augmentation on the device (``data.augment_on=device``).

The same operations and parameters as :func:`finetune.transforms.train_transform` (flips both
ways, right-angle turns, rotation, brightness / contrast / saturation jitter, no hue, an optional random resized crop
back to the cached input size), drawn per sample on whole uint8 batches by
:class:`dermkit.augment.ViewAugment` in :meth:`finetune.module.ClassifierModule.on_after_batch_transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dermkit.augment import ViewAugment, ViewSpec


def train_device_augment(image_size: int, mean: Sequence[float], std: Sequence[float], rotation: float = 180.0,
                         jitter: float = 0.1, crop_scale: float = 1.0, right_angles: bool = False) -> ViewAugment:
    """(B, 3, S, S) uint8 -> (B, 3, S, S) augmented, normalised float32 views.

    Args:
        image_size: S, the cached images' side.
        mean: per-channel mean of the backbone's normalisation (from its card).
        std: per-channel standard deviation.
        rotation: maximum rotation in degrees (180 = any angle), applied to every image.
        jitter: brightness, contrast and saturation jitter, applied to every image.
        crop_scale: smallest area share of the random resized crop (aspect 3/4 to 4/3); 1.0 = none.
        right_angles: also turn by 0, 90, 180 or 270 degrees at random.
    """
    return ViewAugment(ViewSpec(size=image_size, crop_scale=None if crop_scale >= 1.0 else (crop_scale, 1.0),
                                hflip_prob=0.5, vflip_prob=0.5, right_angles=right_angles, rotation_prob=1.0 if rotation > 0 else 0.0,
                                rotation_degrees=rotation, cj_prob=1.0, brightness=jitter, contrast=jitter,
                                saturation=jitter, mean=tuple(mean), std=tuple(std)))
