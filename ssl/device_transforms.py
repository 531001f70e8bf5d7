"""SimCLR and DINO views augmented on the device (``data.augment_on=device``).

The same views as :mod:`ssl.transforms` (lightly's ``SimCLRTransform`` / ``DINOTransform`` with
the dermoscopy parameters of :class:`ssl.transforms.PretrainAugmentConfig`), drawn per sample on a whole
uint8 batch by :class:`dermkit.augment.MultiViewAugment`, in the module's
``on_after_batch_transfer``.
"""

from __future__ import annotations

from dermkit.augment import MultiViewAugment, ViewSpec
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from ssl.transforms import PretrainAugmentConfig, blur_probability, check_augment


def view_spec(aug: PretrainAugmentConfig, size: int, crop_scale: tuple[float, float], blur: float, solarize: float,
              mean: tuple[float, ...], std: tuple[float, ...]) -> ViewSpec:
    """One view with lightly's operations (``cj_strength`` 1) and ``aug``'s parameters.

    Args:
        aug: augmentation knobs (flips, rotation, colour jitter, greyscale, blur sigmas).
        size: side s of the view in px.
        crop_scale: (min, max) area share of the random resized crop.
        blur: probability of a Gaussian blur of this view.
        solarize: probability of solarisation of this view.
        mean: normalisation mean.
        std: normalisation standard deviation.
    """
    return ViewSpec(size=size, crop_scale=crop_scale, hflip_prob=aug.hflip_prob, vflip_prob=aug.vflip_prob,
                    rotation_prob=aug.rotation_prob, rotation_degrees=aug.rotation_degrees, cj_prob=aug.cj_prob,
                    brightness=aug.cj_bright, contrast=aug.cj_contrast, saturation=aug.cj_sat, hue=aug.cj_hue,
                    gray_prob=aug.gray_prob, blur_prob=blur, blur_sigmas=(aug.blur_sigma_min, aug.blur_sigma_max),
                    solarize_prob=solarize, mean=tuple(mean), std=tuple(std))


def simclr_device_views(aug: PretrainAugmentConfig, image_size: int, mean: tuple[float, ...] = IMAGENET_MEAN,
                        std: tuple[float, ...] = IMAGENET_STD) -> MultiViewAugment:
    """Two SimCLR views, as :func:`ssl.transforms.simclr_transform`: (B, 3, S, S) uint8 -> 2 x (B, 3, S, S)."""
    check_augment(aug)
    view = view_spec(aug, image_size, (aug.min_scale, 1.0), blur_probability(aug, image_size), 0.0, mean, std)
    return MultiViewAugment([view, view])


def dino_device_views(aug: PretrainAugmentConfig, image_size: int, local_crop_size: int, n_local_views: int,
                      global_crop_min_scale: float, local_crop_min_scale: float, local_crop_max_scale: float,
                      mean: tuple[float, ...] = IMAGENET_MEAN,
                      std: tuple[float, ...] = IMAGENET_STD) -> MultiViewAugment:
    """DINO's multi-crop, as :func:`ssl.transforms.dino_transform`: 2 global (B, 3, S, S) views (the
    second with 1/5 of the blur and with solarisation), then ``n_local_views`` (B, 3, s, s) views."""
    check_augment(aug)
    blur = blur_probability(aug, image_size)
    global_scale = (global_crop_min_scale, 1.0)
    local = view_spec(aug, local_crop_size, (local_crop_min_scale, local_crop_max_scale), blur, 0.0, mean, std)
    return MultiViewAugment([view_spec(aug, image_size, global_scale, blur, 0.0, mean, std),
                             view_spec(aug, image_size, global_scale, blur * 0.2, aug.solarize_prob, mean, std),
                             *[local] * n_local_views])
