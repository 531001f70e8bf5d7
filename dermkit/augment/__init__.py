"""Batched augmentation on the device: uint8 cache images -> augmented, normalised views.

``data.augment_on`` (:data:`dermkit.config.AUGMENT_ON`) picks this path (``device``) or the
per-image transforms in the data-loader workers (``workers``).
"""

from dermkit.augment.batch import MultiViewAugment, ViewAugment, ViewSpec, crop_boxes, seed_for_process, vignette

__all__ = ["MultiViewAugment", "ViewAugment", "ViewSpec", "crop_boxes", "seed_for_process", "vignette"]
