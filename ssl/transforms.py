"""Dermoscopy augmentations for SimCLR and DINO, built from lightly's transforms.

The views are lightly's ``SimCLRTransform`` / ``DINOTransform`` with parameters chosen for
dermoscopy images rather than ImageNet photos:

* rotation at any angle and vertical flips: a lesion seen from above has no "up";
* small hue shifts only (colour is diagnostic: blue-white veil, red vascular patterns), while
  brightness / contrast / saturation still vary as they do between dermatoscopes;
* Gaussian blur off at 64 px and below, where it removes the little texture that is left
  (the SimCLR paper also drops blur for 32-px CIFAR);
* ImageNet normalisation, recorded in the backbone card so later stages feed images the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from lightly.transforms import DINOTransform, SimCLRTransform
from torchvision import transforms as T

from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from dermkit.errors import DermkitError


@dataclass
class PretrainAugmentConfig:
    """Augmentation knobs shared by the views of every method (SimCLR, DINO, BYOL).

    Keys:
        min_scale: smallest random-resized-crop area, as a share of the image (SimCLR views;
            DINO uses ``dino.global_crop_min_scale`` / ``dino.local_crop_*_scale``).
        hflip_prob: probability of a horizontal flip.
        vflip_prob: probability of a vertical flip.
        rotation_prob: probability of a rotation.
        rotation_degrees: rotations are drawn from [-rotation_degrees, +rotation_degrees]
            (180 = any angle).
        cj_prob: probability that colour jitter is applied.
        cj_bright: brightness jitter.
        cj_contrast: contrast jitter.
        cj_sat: saturation jitter.
        cj_hue: hue jitter (kept small: colour is diagnostic).
        gray_prob: probability of converting a view to greyscale.
        blur_prob: probability of Gaussian blur (of the first DINO global view; the others use
            half of it).
        blur_off_at: no blur at all when ``data.image_size`` is this or smaller.
        blur_sigma_min: smallest blur sigma.
        blur_sigma_max: largest blur sigma.
        solarize_prob: DINO and BYOL only: solarisation probability of the second (global) view.
    """

    min_scale: float = 0.2
    hflip_prob: float = 0.5
    vflip_prob: float = 0.5
    rotation_prob: float = 0.5
    rotation_degrees: float = 180.0
    cj_prob: float = 0.8
    cj_bright: float = 0.4
    cj_contrast: float = 0.4
    cj_sat: float = 0.3
    cj_hue: float = 0.02
    gray_prob: float = 0.1
    blur_prob: float = 0.5
    blur_off_at: int = 64
    blur_sigma_min: float = 0.1
    blur_sigma_max: float = 2.0
    solarize_prob: float = 0.0


def lightly_normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, list[float]]:
    """The ``normalize`` argument of lightly's transforms: ``{"mean": [...], "std": [...]}``."""
    return {"mean": list(mean), "std": list(std)}


def check_augment(aug: PretrainAugmentConfig) -> None:
    """Refuse probabilities outside [0, 1] and a hue shift outside [0, 0.5], naming the key.

    Raises:
        DermkitError: a value out of range.
    """
    for key in ("min_scale", "hflip_prob", "vflip_prob", "rotation_prob", "cj_prob", "gray_prob",
                "blur_prob", "solarize_prob"):
        value = float(getattr(aug, key))
        if not 0.0 <= value <= 1.0:
            raise DermkitError(f"Config key augment.{key} must lie in [0, 1], got {value}.")
    if not 0.0 <= aug.cj_hue <= 0.5:
        raise DermkitError(f"Config key augment.cj_hue must lie in [0, 0.5], got {aug.cj_hue}.")


def blur_probability(aug: PretrainAugmentConfig, image_size: int) -> float:
    """The blur probability actually used: 0 at ``augment.blur_off_at`` px and below."""
    return 0.0 if image_size <= aug.blur_off_at else float(aug.blur_prob)


def simclr_transform(aug: PretrainAugmentConfig, image_size: int, mean: tuple[float, ...] = IMAGENET_MEAN,
                     std: tuple[float, ...] = IMAGENET_STD) -> SimCLRTransform:
    """Two SimCLR views of one image.

    Args:
        aug: augmentation knobs.
        image_size: S, the side of the views.

    Returns:
        A callable mapping a PIL image to a list of two (3, S, S) float tensors.
    """
    check_augment(aug)
    return SimCLRTransform(
        input_size=image_size, cj_prob=aug.cj_prob, cj_strength=1.0, cj_bright=aug.cj_bright,
        cj_contrast=aug.cj_contrast, cj_sat=aug.cj_sat, cj_hue=aug.cj_hue, min_scale=aug.min_scale,
        random_gray_scale=aug.gray_prob, gaussian_blur=blur_probability(aug, image_size),
        sigmas=(aug.blur_sigma_min, aug.blur_sigma_max), vf_prob=aug.vflip_prob, hf_prob=aug.hflip_prob,
        rr_prob=aug.rotation_prob, rr_degrees=aug.rotation_degrees, normalize=lightly_normalize(mean, std),
    )


def dino_transform(aug: PretrainAugmentConfig, image_size: int, local_crop_size: int, n_local_views: int,
                   global_crop_min_scale: float, local_crop_min_scale: float, local_crop_max_scale: float,
                   mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> DINOTransform:
    """DINO's multi-crop views: two global crops of side S, ``n_local_views`` local crops.

    Returns:
        A callable mapping a PIL image to a list of 2 (3, S, S) tensors followed by
        ``n_local_views`` (3, s, s) tensors, s = ``local_crop_size``.
    """
    check_augment(aug)
    if not 0.0 < local_crop_min_scale < local_crop_max_scale <= 1.0:
        raise DermkitError("Config keys dino.local_crop_min_scale < dino.local_crop_max_scale must lie in (0, 1], "
                           f"got {local_crop_min_scale} and {local_crop_max_scale}.")
    if not 0.0 < global_crop_min_scale <= 1.0:
        raise DermkitError(f"Config key dino.global_crop_min_scale must lie in (0, 1], got {global_crop_min_scale}.")
    blur = blur_probability(aug, image_size)
    return DINOTransform(
        global_crop_size=image_size, global_crop_scale=(global_crop_min_scale, 1.0),
        local_crop_size=local_crop_size, local_crop_scale=(local_crop_min_scale, local_crop_max_scale),
        n_local_views=n_local_views, hf_prob=aug.hflip_prob, vf_prob=aug.vflip_prob, rr_prob=aug.rotation_prob,
        rr_degrees=aug.rotation_degrees, cj_prob=aug.cj_prob, cj_strength=1.0, cj_bright=aug.cj_bright,
        cj_contrast=aug.cj_contrast, cj_sat=aug.cj_sat, cj_hue=aug.cj_hue, random_gray_scale=aug.gray_prob,
        gaussian_blur=(blur, blur * 0.2, blur), sigmas=(aug.blur_sigma_min, aug.blur_sigma_max),
        solarization_prob=aug.solarize_prob, normalize=lightly_normalize(mean, std),
    )


def eval_transform(mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> Callable[[object], torch.Tensor]:
    """The un-augmented view used for kNN monitoring and frozen-feature evaluation.

    The image cache already holds S x S images, so this only converts and normalises:
    PIL image -> (3, S, S) float tensor.
    """
    return T.Compose([T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))])
