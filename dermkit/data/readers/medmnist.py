"""MedMNIST's DermaMNIST: a ``dermamnist*.npz`` of pre-split, pre-resized HAM10000 images.

``data.root`` is the ``.npz`` file or a folder holding exactly one ``dermamnist*.npz``. Keys:
``{train,val,test}_images`` ((N, H, W, 3) or (N, H, W) uint8) and ``{train,val,test}_labels``
((N, 1) or (N,) integers). DermaMNIST's label order is 0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel, 5 nv,
6 vasc.

Pixels stay in memory (:attr:`ImageSource.arrays`, one row per record via ``array_index``; records
have no path). The image id is ``<split>_<index>`` (``train_00042``) in the file's own split.

DermaMNIST carries no lesion ids, and its own train/val/test split was drawn per image, so images
of one lesion sit on both sides and scores on it are inflated. We therefore ignore its split and
re-split with the rest of the toolkit; with lesion ids unknown, each image is its own group, so
the leak cannot be removed from this source: prefer the HAM10000 reader with its metadata for any
reported result.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dermkit.data.readers import register_reader
from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError
from dermkit.vocab import sort_classes

DERMAMNIST_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# Alphabetical, so that records sorted by image id are in array order.
_SPLITS: tuple[str, ...] = ("test", "train", "val")


def find_npz(root: Path) -> Path:
    """The ``dermamnist*.npz`` that ``root`` is or holds.

    Raises:
        DermkitError: missing path, or a folder with no or several matching files.
    """
    if root.is_file():
        return root
    if not root.is_dir():
        raise DermkitError(f"MedMNIST path {root} does not exist. Set data.root to a dermamnist*.npz file "
                           "or the folder holding it.")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".npz"  # any letter case
                   and p.name.lower().startswith("dermamnist"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DermkitError(f"No dermamnist*.npz in {root}. Set data.root to the DermaMNIST .npz file.")
    raise DermkitError(f"Several DermaMNIST files in {root}: {', '.join(p.name for p in found)}. "
                       "Set data.root to the one to use.")


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DermkitError(f"MedMNIST file {path} is not a readable .npz archive ({err}). "
                           "Download it again or point data.root at another file.") from None


def _split_pixels(path: Path, arrays: dict[str, np.ndarray], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one split's images and labels; returns ((N, H, W, 3) uint8, (N,) int64)."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise DermkitError(f"MedMNIST file {path}: {split}_images has shape {images.shape} and dtype {images.dtype}; "
                           "expected uint8 (N, H, W, 3) or (N, H, W).")
    if images.ndim == 3:  # grayscale: repeat to RGB
        images = np.repeat(images[..., None], 3, axis=-1)
    labels = labels.reshape(len(labels), -1)
    if labels.shape != (len(images), 1) or not np.issubdtype(labels.dtype, np.integer):
        raise DermkitError(f"MedMNIST file {path}: {split}_labels has shape {arrays[f'{split}_labels'].shape} and "
                           f"dtype {labels.dtype}; expected integers (N, 1) with N = {len(images)} images.")
    return images, labels[:, 0].astype(np.int64)


@register_reader("medmnist")
def read_medmnist(root: Path, skip_bad: bool) -> ImageSource:
    """Read a DermaMNIST ``.npz`` into in-memory records (all three of its splits, to be re-split).

    Raises:
        DermkitError: missing or unreadable file, missing keys, wrong shapes or dtypes, images of
            different sizes across splits, or a label outside 0-6 (skipped and listed with
            ``skip_bad``).
    """
    path = find_npz(root)
    arrays = _load_arrays(path)
    present = [s for s in _SPLITS if f"{s}_images" in arrays or f"{s}_labels" in arrays]
    missing = [f"{s}_{kind}" for s in present for kind in ("images", "labels") if f"{s}_{kind}" not in arrays]
    if not present or missing:
        raise DermkitError(f"MedMNIST file {path} lacks the key(s) {', '.join(missing) or 'train_images, train_labels'} "
                           f"(found: {', '.join(sorted(arrays)) or 'none'}). Expected DermaMNIST's "
                           "{train,val,test}_images and {train,val,test}_labels.")
    pixels: list[np.ndarray] = []
    records: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    for split in present:
        images, labels = _split_pixels(path, arrays, split)
        if pixels and images.shape[1:] != pixels[0].shape[1:]:
            raise DermkitError(f"MedMNIST file {path}: {split}_images are {images.shape[1:3]} pixels, other splits "
                               f"{pixels[0].shape[1:3]}; all images must have one size.")
        width = max(5, len(str(len(images))))
        offset = sum(len(p) for p in pixels)  # rows of the earlier splits in the concatenated array
        keep: list[int] = []
        for i, label in enumerate(labels):
            image_id = f"{split}_{i:0{width}d}"
            if not 0 <= label < len(DERMAMNIST_CLASSES):
                skipped.append((image_id, f"label {label} outside DermaMNIST's 0-{len(DERMAMNIST_CLASSES) - 1}"))
                continue
            records.append(ImageRecord(image_id, None, DERMAMNIST_CLASSES[label], None,
                                       array_index=offset + len(keep)))
            keep.append(i)
        pixels.append(images[keep])
    if skipped and not skip_bad:
        shown = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise DermkitError(f"MedMNIST file {path} has {len(skipped)} label(s) outside the class vocabulary: "
                           f"{shown}{more}. Set data.skip_bad=true to skip them.")
    if not records:
        raise DermkitError(f"MedMNIST file {path} holds no images.")
    records.sort(key=lambda r: r.image_id)
    classes = sort_classes({r.label for r in records if r.label})
    return ImageSource("medmnist", path, records, classes, arrays=np.concatenate(pixels), skipped=skipped)
