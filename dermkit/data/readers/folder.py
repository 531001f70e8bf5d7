"""An unlabeled folder of images, searched recursively (jpg, jpeg, png, bmp, tif, tiff)."""

from __future__ import annotations

from pathlib import Path

from dermkit.data.images import IMAGE_EXTENSIONS
from dermkit.data.readers import register_reader
from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError


def list_images(root: Path) -> list[Path]:
    """Image files below ``root`` (recursive, by extension, any case), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@register_reader("folder")
def read_folder(root: Path, skip_bad: bool) -> ImageSource:
    """Every image below ``root``; the id is the path relative to ``root`` without extension."""
    if not root.is_dir():
        raise DermkitError(f"Image folder {root} does not exist. Set data.root to a folder of images.")
    paths = list_images(root)
    if not paths:
        raise DermkitError(f"Image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}), "
                           "searched recursively.")
    records = [ImageRecord(str(p.relative_to(root).with_suffix("")), p) for p in paths]
    return ImageSource("folder", root, records, ())
