"""Decoding one image file safely: any mode becomes 8-bit RGB, any failure a message naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermkit.errors import DermkitError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
SKIP_HINT = "Replace or remove the file, or set data.skip_bad=true to skip bad files and list them."


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit grayscale are scaled by their dtype's range (not clipped); transparent
    images are composited on white; CMYK, palette and grayscale go through Pillow's converters.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file fully and return it as 8-bit RGB.

    Raises:
        DermkitError: the file is missing, empty, truncated, not an image Pillow can read, or
            over Pillow's decompression-bomb pixel limit.
    """
    path = Path(path)
    if not path.is_file():
        raise DermkitError(f"Image file {path} does not exist. Check data.root, or that the metadata lists "
                           f"only files that are there. {SKIP_HINT}")
    if path.stat().st_size == 0:
        raise DermkitError(f"Image file {path} is empty (0 bytes). {SKIP_HINT}")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (and, under -W error, over 1 x)
        # before decoding them, as possible decompression bombs: a bad file like any other.
        raise DermkitError(f"Image file {path} is too large to decode safely: {err} {SKIP_HINT}") from None
    except UnidentifiedImageError:
        raise DermkitError(f"Image file {path} is not in a format Pillow can read (expected one of "
                           f"{', '.join(IMAGE_EXTENSIONS)}). {SKIP_HINT}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DermkitError(f"Image file {path} is truncated or corrupt ({err}). {SKIP_HINT}") from None


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and centre-crop to ``size`` x ``size``.

    Dermoscopy images centre the lesion, so a centre crop keeps it and keeps its shape (a plain
    resize of a 4:3 image would squash the lesion).
    """
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))
