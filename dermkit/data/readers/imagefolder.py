"""ImageFolder layout: one subfolder per class, images below it (recursive).

``root/mel/a.jpg``, ``root/melanoma/more/b.png``, ``root/nv/c.bmp``: folder names go through the
class vocabulary, so aliases (``melanoma``, ``nevus``) work and two folders with names of the same
class are one class. A folder name outside the vocabulary is an error listing the closest names, unless a class
map (``finetune.evaluate --class-map``) names its class. Lesions are unknown: each image is its own group in a split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dermkit.data.images import IMAGE_EXTENSIONS
from dermkit.data.readers import register_reader
from dermkit.data.readers.folder import list_images
from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class, sort_classes


@register_reader("imagefolder")
def read_imagefolder(root: Path, skip_bad: bool, class_map: Mapping[str, str] | None = None) -> ImageSource:
    """Read a folder with a subfolder per class; the image id is its path relative to ``root``.

    Args:
        root: the folder.
        skip_bad: skip (and list) empty class folders instead of stopping.
        class_map: folder name -> canonical class, for folders the vocabulary does not know (or
            should map otherwise); the other folders go through the vocabulary.

    Raises:
        DermkitError: the folder is missing or has no class subfolders, a subfolder name is not a
            class, or a class subfolder holds no images (skipped and listed with ``skip_bad``).
    """
    if not root.is_dir():
        raise DermkitError(f"Image folder {root} does not exist. Set data.root to a folder with one "
                           "subfolder per class (e.g. mel/, nv/).")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = "; it holds images directly, use data.name=folder for unlabeled images" if list_images(root) else ""
        raise DermkitError(f"Image folder {root} has no class subfolders{loose}. Put each class's images in a "
                           "subfolder named after the class (e.g. mel/, nv/).")
    records: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    for class_dir in class_dirs:
        try:
            label = class_map[class_dir.name] if class_map and class_dir.name in class_map \
                else canonical_class(class_dir.name)
        except DermkitError as err:
            raise DermkitError(f"Class folder {class_dir}: {err} Rename the folder to a class name"
                               f"{', or name its class in --class-map' if class_map is not None else ''}.") from None
        paths = list_images(class_dir)
        if not paths:
            if not skip_bad:
                raise DermkitError(f"Class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                                   "Add images, remove the folder, or set data.skip_bad=true to skip it.")
            skipped.append((str(class_dir), "class folder holds no images"))
        records.extend(ImageRecord(str(p.relative_to(root).with_suffix("")), p, label) for p in paths)
    if not records:
        raise DermkitError(f"Image folder {root} holds no images in its class subfolders.")
    records.sort(key=lambda r: r.image_id)
    return ImageSource("imagefolder", root, records, sort_classes({r.label for r in records if r.label}),
                       skipped=skipped)
