"""Image transforms for fine-tuning (torchvision v2), on the PIL images of ``CachedImageDataset``.

Dermoscopy images have no canonical orientation, so training flips both ways and can turn by right
angles (``augment.right_angles``) or rotate by any angle (``augment.rotation``, black corners); colour
jitter is kept small because colour carries diagnostic information (e.g. the blue-white
veil of melanoma). The cache already stores square images at the model's input size; the optional
random resized crop (``augment.crop_scale`` < 1) resizes its box back to that size. Against another
clinic's acquisition, ``augment.zoom_out`` shrinks the image inside a mirrored border and
``augment.vignette`` darkens the corners.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from dermkit.augment import vignette

from finetune.config import FinetuneAugmentConfig


class RandomZoomOut:
    """Shrink a (3, S, S) uint8 image by a side factor drawn from [1, ``largest``], centred, border mirrored.

    The worker path's half of ``augment.zoom_out``; the device path does the same in its one
    affine resampling (:class:`dermkit.augment.ViewSpec` ``zoom_out``).
    """

    def __init__(self, largest: float) -> None:
        self.largest = largest

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[-1]
        factor = float(torch.empty(()).uniform_(1.0, self.largest))
        pad = round((factor - 1) * size / 2)
        if pad == 0:
            return image
        pad = min(pad, size - 1)  # reflect padding cannot reach past the image itself
        padded = torch.nn.functional.pad(image.unsqueeze(0).float(), [pad] * 4, mode="reflect")  # (1, 3, S+2p, S+2p)
        shrunk = v2.functional.resize(padded, [size, size], antialias=True).squeeze(0)  # (3, S, S)
        return shrunk.round_().clamp_(0, 255).to(image.dtype)


class RandomVignette:
    """Dark corners (:func:`dermkit.augment.vignette`) on a (3, S, S) image in [0, 1], with probability ``prob``."""

    def __init__(self, prob: float) -> None:
        self.prob = prob

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.prob:
            return image
        return vignette(image.unsqueeze(0)).squeeze(0)


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                    augment: FinetuneAugmentConfig) -> v2.Compose:
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
    # Zooming out and vignetting work on tensors; PIL stays for the steps it does faster.
    zoom = ([v2.ToImage(), RandomZoomOut(augment.zoom_out), v2.ToPILImage()] if augment.zoom_out > 1 else [])
    dark_corners = [RandomVignette(augment.vignette)] if augment.vignette > 0 else []
    return v2.Compose([
        *crop,
        *zoom,
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        *turn,
        v2.RandomRotation(augment.rotation, interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        *dark_corners,
        v2.Normalize(list(mean), list(std)),
    ])


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Deterministic transform for validation, test and external evaluation."""
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])
