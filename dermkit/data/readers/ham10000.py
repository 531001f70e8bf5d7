"""HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, ...) plus the image files.

Images are looked up as ``<image_id>.<ext>`` in the root, ``images/``, and the two folders of the
original release (``HAM10000_images_part_1`` / ``_part_2``), the extension in any letter case
(``.jpg``, ``.JPG``). The demo dataset uses this format too.
"""

from __future__ import annotations

from pathlib import Path

from dermkit.data.images import IMAGE_EXTENSIONS
from dermkit.data.readers import register_reader
from dermkit.csvfile import read_csv_rows
from dermkit.data.readers.csvutil import index_images
from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class, sort_classes

METADATA = "HAM10000_metadata.csv"
_IMAGE_FOLDERS = ("", "images", "HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")


def read_ham10000_folder(root: Path, skip_bad: bool, name: str = "ham10000") -> ImageSource:
    """Read a HAM10000-format folder.

    Raises:
        DermkitError: missing metadata, missing columns, a class outside the vocabulary, or
            missing image files (all listed; with ``skip_bad`` they are skipped instead).
    """
    if not root.is_dir():
        raise DermkitError(f"Dataset folder {root} does not exist. Set data.root (or DERMKIT_HAM10000) to the "
                           f"folder holding {METADATA}.")
    rows = read_csv_rows(root / METADATA, ["lesion_id", "image_id", "dx"], "Metadata file", "Check data.root.")
    if not rows:
        raise DermkitError(f"Metadata file {root / METADATA} lists no images.")
    files = index_images([root / f for f in _IMAGE_FOLDERS], IMAGE_EXTENSIONS)
    records: list[ImageRecord] = []
    missing: list[str] = []
    for row in rows:
        try:
            label = canonical_class(row["dx"])
        except DermkitError as err:
            raise DermkitError(f"{root / METADATA}, image {row['image_id']}: {err}") from None
        path = files.get(row["image_id"])
        if path is None:
            missing.append(row["image_id"])
            continue
        records.append(ImageRecord(row["image_id"], path, label, row["lesion_id"] or None))
    skipped = [(m, "image file not found") for m in missing]
    if missing and not skip_bad:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DermkitError(f"{len(missing)} image(s) listed in {root / METADATA} are not under {root} "
                           f"(looked in {', '.join(f or '.' for f in _IMAGE_FOLDERS)} for "
                           f"{', '.join(IMAGE_EXTENSIONS)} files, in any letter case): {shown}. "
                           "Set data.skip_bad=true to skip them.")
    records.sort(key=lambda r: r.image_id)
    return ImageSource(name, root, records, sort_classes({r.label for r in records if r.label}), skipped=skipped)


@register_reader("ham10000")
def read_ham10000(root: Path, skip_bad: bool) -> ImageSource:
    return read_ham10000_folder(root, skip_bad)


@register_reader("demo")
def read_demo(root: Path, skip_bad: bool) -> ImageSource:
    """The embedded demo data (generated in HAM10000 format by :mod:`dermkit.data.demo`)."""
    return read_ham10000_folder(root, skip_bad, name="demo")
