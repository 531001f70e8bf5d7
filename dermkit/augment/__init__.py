"""Batched augmentation on the device: uint8 cache images -> augmented, normalised views.

``data.augment_on`` (:data:`dermkit.config.AUGMENT_ON`) picks this path (``device``) or the
per-image transforms in the data-loader workers (``workers``); ``resident`` augments as ``device`` does, on
batches drawn from images kept on the device (:mod:`dermkit.data.resident`), and scales its evaluation
batches with :func:`normalize`.
"""

from dermkit.augment.batch import (MultiViewAugment, ViewAugment, ViewSpec, crop_boxes, normalize, seed_for_process,
                                   vignette)

__all__ = ["MultiViewAugment", "ViewAugment", "ViewSpec", "crop_boxes", "normalize", "seed_for_process", "vignette"]
