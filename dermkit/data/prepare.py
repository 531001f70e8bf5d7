"""From a :class:`~dermkit.config.DataConfig` to cached images with a lesion-grouped split.

Every stage calls :func:`prepare_data` the same way, so every stage sees the same images, the same
split and the same split hash for the same config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermkit.config import DataConfig, default_ham10000_root
from dermkit.console import console
from dermkit.data.cache import CacheResult, cache_arrays, cache_images
from dermkit.data.color import check_color_constancy
from dermkit.data.readers import read_source
from dermkit.data.records import ImageSource
from dermkit.data.splits import SPLITS, SplitTable
from dermkit.errors import DermkitError


@dataclass
class PreparedData:
    """A dataset ready for training: records, cached pixels and a split.

    Attributes:
        source: what the reader returned (records in cache-row order).
        split: the split of the readable records (unlabeled sources: everything in train).
        cache: the cached image array; row i holds ``source.records[i]``.
        rows: (len(split),) cache row of each split-table entry (unreadable images have none).
        color_constancy: the colour constancy applied to the cached pixels (``data.color_constancy``).
    """

    source: ImageSource
    split: SplitTable
    cache: CacheResult
    rows: np.ndarray
    color_constancy: str = "none"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class index per cache row; -1 for unlabeled."""
        return self.source.label_indices()

    @property
    def split_hash(self) -> str:
        return self.split.hash

    @property
    def cache_path(self) -> Path:
        return self.cache.path

    @property
    def images(self) -> np.ndarray:
        """(N, S, S, 3) uint8, memory-mapped."""
        return self.cache.open()

    @property
    def image_ids(self) -> list[str]:
        """Image id per cache row."""
        return [r.image_id for r in self.source.records]

    def indices(self, split: str, fraction: float = 1.0) -> np.ndarray:
        """Sorted cache rows of ``split`` (``train``/``val``/``test``/``all``).

        Args:
            fraction: for ``train``, the nested label fraction to keep (0.01 ... 1.0).
        """
        if split not in (*SPLITS, "all"):
            raise DermkitError(f"Unknown split {split!r}; expected one of {', '.join((*SPLITS, 'all'))}.")
        side = np.array(self.split.split)
        keep = np.ones(len(side), dtype=bool) if split == "all" else side == split
        if fraction < 1.0:
            if split != "train":
                raise DermkitError("A label fraction applies to the training split only.")
            fraction = self.split.check_fraction(fraction)
            mins = np.array([np.inf if f is None else f for f in self.split.min_fraction])
            keep &= mins <= fraction + 1e-12
        return np.sort(self.rows[keep])

    def split_sizes(self) -> dict[str, int]:
        """Images per split (``train``, ``val``, ``test``)."""
        side = np.array(self.split.split)
        return {name: int((side == name).sum()) for name in SPLITS}

    def required_indices(self, split: str, fraction: float = 1.0, remedy: str = "") -> np.ndarray:
        """:meth:`indices`, refusing an empty result with one line instead of a later failure.

        Args:
            split: ``train``/``val``/``test``/``all``.
            fraction: for ``train``, the nested label fraction.
            remedy: what the user can do instead (appended to the message); empty: the split settings.

        Raises:
            DermkitError: the split (or its label fraction) holds no image; the message names the
                dataset and every split's size.
        """
        rows = self.indices(split, fraction)
        if len(rows):
            return rows
        sizes = ", ".join(f"{n} {name}" for name, n in self.split_sizes().items())
        part = f"The {fraction:g} label fraction of the train split" if fraction < 1.0 else f"The {split} split"
        raise DermkitError(f"{part} of {self.source.name} at {self.source.root} holds no image ({len(self.rows)} "
                           f"image(s): {sizes}; split seed {self.split.seed}). "
                           f"{remedy or 'Use a larger dataset, or change data.val_fraction / data.test_fraction.'}")

    def class_counts(self, indices: np.ndarray) -> dict[str, int]:
        """Images per class among the given cache rows."""
        counts = np.bincount(self.labels[indices], minlength=len(self.classes)) if len(indices) else []
        return {c: int(counts[i]) if len(indices) else 0 for i, c in enumerate(self.classes)}

    def describe(self) -> dict[str, Any]:
        """What later stages record about the data they used.

        ``images`` counts the images used (the split's), not the records read: an image skipped as
        unreadable is listed under ``skipped`` with its reason instead.
        """
        return {"name": self.source.name, "root": str(self.source.root), "images": int(len(self.rows)),
                "skipped": [[image_id, reason] for image_id, reason in self.source.skipped],
                "classes": list(self.classes), "split_hash": self.split_hash, "split_seed": self.split.seed,
                "image_size": int(self.images.shape[1]), "color_constancy": self.color_constancy}


def resolve_root(cfg: DataConfig) -> Path:
    """The dataset folder for a config: ``data.root``, or the format's default location."""
    if cfg.root:
        return Path(cfg.root).expanduser()
    if cfg.name == "demo":
        from dermkit.data.demo import ensure_demo_dataset

        return ensure_demo_dataset(Path(cfg.cache_dir).expanduser())
    if cfg.name == "ham10000":
        return Path(default_ham10000_root())
    raise DermkitError(f"data.root is empty: set it to the {cfg.name} dataset's folder (e.g. --root DIR).")


def prepare_data(cfg: DataConfig, source: ImageSource | None = None) -> PreparedData:
    """Read the dataset, cache its images at ``cfg.image_size`` and split it.

    With ``cfg.split_file`` the saved split is used (its image ids must match the dataset's);
    otherwise the split is computed from ``cfg.split_seed`` and the fractions. Unlabeled sources
    (``folder``) put every image in ``train``.

    Args:
        cfg: the data section.
        source: records already read (e.g. an image folder read with a class map); None reads
            ``cfg.name`` at ``cfg.root``.

    Raises:
        DermkitError: any bad input, naming the file and what to do.
    """
    if cfg.image_size < 8:
        raise DermkitError(f"data.image_size={cfg.image_size} is too small (minimum 8 px).")
    check_color_constancy(cfg.color_constancy)
    if source is None:
        source = read_source(cfg.name, resolve_root(cfg), cfg.skip_bad)
    if not source.records:
        raise DermkitError(f"Dataset {source.root} ({cfg.name}) holds no usable images.")
    if source.arrays is not None:
        stat = source.root.stat()
        cache = cache_arrays(source.arrays, cfg.image_size, cfg.cache_dir,
                             f"{source.root.resolve()}|{stat.st_size}|{stat.st_mtime_ns}", cfg.color_constancy)
    else:
        cache = cache_images([r.path for r in source.records], cfg.image_size, cfg.cache_dir,  # type: ignore[misc]
                             skip_bad=cfg.skip_bad, description=f"Caching {cfg.name}",
                             color_constancy=cfg.color_constancy)
    for i, message in cache.errors:
        source.skipped.append((source.records[i].image_id, message))
    rows = np.flatnonzero(cache.ok)
    readable = [source.records[i] for i in rows]
    if cfg.split_file:
        split = _aligned_split(SplitTable.load(cfg.split_file), readable, Path(cfg.split_file))
    elif source.labeled:
        split = SplitTable.make(readable, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    else:
        split = SplitTable([r.image_id for r in readable], [r.lesion_id or "" for r in readable],
                           [""] * len(readable), ["train"] * len(readable), [1.0] * len(readable), cfg.split_seed)
    if source.skipped:
        console.print(f"[yellow]{len(source.skipped)} image(s) skipped:[/] "
                      + ", ".join(f"{i} ({m.split('.')[0]})" for i, m in source.skipped[:10])
                      + (" ..." if len(source.skipped) > 10 else ""))
    return PreparedData(source, split, cache, rows, cfg.color_constancy)


def _aligned_split(table: SplitTable, records: list, path: Path) -> SplitTable:
    """Reorder a saved split to the dataset's records; every record must be in it."""
    position = {image_id: i for i, image_id in enumerate(table.image_ids)}
    missing = [r.image_id for r in records if r.image_id not in position]
    if missing:
        raise DermkitError(f"Split file {path} does not list {len(missing)} image(s) of the dataset "
                           f"(e.g. {', '.join(missing[:3])}). Was it written for another dataset?")
    order = [position[r.image_id] for r in records]
    return SplitTable([table.image_ids[i] for i in order], [table.lesion_ids[i] for i in order],
                      [table.labels[i] for i in order], [table.split[i] for i in order],
                      [table.min_fraction[i] for i in order], table.seed)
