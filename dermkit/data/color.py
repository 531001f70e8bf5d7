"""Colour constancy: remove the colour cast of a camera and its lighting before a network sees the image.

Shades of Gray (Finlayson & Trezzi 2004) estimates the illuminant of each channel as the Minkowski
p-norm of its pixel values and scales the channels so that the estimated illuminant becomes gray.
``p=6`` is what the top ISIC 2018 entries used (Barata et al. 2015 for dermoscopy): p=1 is the
gray-world assumption, p=inf white-patch (max-RGB).

The correction is applied in one place, when images are decoded into the cache
(:func:`dermkit.data.cache.cache_images`), so every stage sees the same pixels; the setting is
part of the cache key and of :meth:`dermkit.data.prepare.PreparedData.describe`, so it is recorded
with every model trained on the data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dermkit.registry import Registry

# ``data.color_constancy``: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 corrected. A new method: one function
# below decorated with ``@COLOR_CONSTANCY.register("name")`` (and its words in finetune.export's
# preprocessing_steps, which an exported model's users follow).
ColorConstancy = Callable[[np.ndarray], np.ndarray]
COLOR_CONSTANCY: Registry[ColorConstancy] = Registry("colour constancy method")
SHADES_OF_GRAY_P = 6


def check_color_constancy(value: str, key: str = "data.color_constancy") -> str:
    """``value`` if it names a colour-constancy method.

    Raises:
        DermkitError: an unknown name, with the closest names and every registered one.
    """
    COLOR_CONSTANCY.lookup(value, key=key)
    return value


@COLOR_CONSTANCY.register("none")
def no_correction(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8, unchanged (the same array)."""
    return image


@COLOR_CONSTANCY.register("shades_of_gray")
def shades_of_gray(image: np.ndarray, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """Shades of Gray colour constancy of one RGB image.

    Args:
        image: (H, W, 3) uint8 RGB.
        p: Minkowski norm of the illuminant estimate.

    Returns:
        (H, W, 3) uint8: each channel scaled by ``|e| / (sqrt(3) e_c)`` where ``e_c`` is the
        channel's p-norm mean, so the corrected channels have equal p-norms (up to clipping at 255).
    """
    pixels = image.astype(np.float64)  # (H, W, 3)
    illuminant = np.power(np.mean(np.power(pixels, p), axis=(0, 1)), 1.0 / p)  # (3,)
    norm = float(np.linalg.norm(illuminant))
    if norm == 0.0:
        return image.copy()  # an all-black image has no illuminant to remove
    # A channel that is entirely 0 keeps gain 1 (there is nothing to scale).
    gains = np.where(illuminant > 0, norm / (np.sqrt(3.0) * np.maximum(illuminant, 1e-12)), 1.0)  # (3,)
    return np.clip(pixels * gains + 0.5, 0, 255).astype(np.uint8)


def apply_color_constancy(image: np.ndarray, method: str) -> np.ndarray:
    """``image`` (H, W, 3) uint8 corrected with ``method``, a name of :data:`COLOR_CONSTANCY`
    (``none`` returns it unchanged).

    Raises:
        DermkitError: an unknown method.
    """
    return COLOR_CONSTANCY.lookup(method, key="data.color_constancy")(image)
