"""The in-memory form every reader returns: one record per image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        image_id: unique id within the dataset (HAM10000's ``image_id``, a file stem, or
            ``<split>_<index>`` for MedMNIST).
        path: image file, or None where pixels come from :attr:`ImageSource.arrays`.
        label: canonical class name (see :mod:`dermkit.vocab`), or None when unlabeled.
        lesion_id: images of the same lesion share it; None where unknown (the image is then
            its own group).
        array_index: row in :attr:`ImageSource.arrays` when ``path`` is None.
    """

    image_id: str
    path: Path | None
    label: str | None = None
    lesion_id: str | None = None
    array_index: int | None = None

    @property
    def group(self) -> str:
        """The id that splits keep on one side: the lesion where known, else the image."""
        return self.lesion_id or f"image:{self.image_id}"


@dataclass
class ImageSource:
    """A dataset as read from disk: records, its classes, and in-memory pixels if any.

    Attributes:
        name: the reader's name (``ham10000``, ``isic``, ``imagefolder``, ``medmnist``, ``folder``,
            ``demo``).
        root: the folder or file it was read from.
        records: one per image, in a stable order (sorted by image_id).
        classes: canonical classes present, in canonical order; empty for unlabeled data.
        arrays: (N, H, W, 3) uint8 pixels for sources without files (MedMNIST), else None.
        skipped: files that were skipped as unreadable (``data.skip_bad=true``), with the reason.
    """

    name: str
    root: Path
    records: list[ImageRecord]
    classes: tuple[str, ...]
    arrays: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    def label_indices(self) -> np.ndarray:
        """(N,) int64 index into :attr:`classes` per record; -1 for unlabeled records."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(r.label, -1) if r.label else -1 for r in self.records], dtype=np.int64)
