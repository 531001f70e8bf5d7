"""Synthetic training images from a ``synth.generate`` manifest.

The manifest (``OUT/manifest.csv``) lists finished PNGs with at least the columns ``file``
(relative to the manifest's folder), ``class`` and ``split_hash``; ``OUT/manifest.json`` may name
the split hash too. Stages exchange files, not code, so the CSV is read here directly.

Rules (the scientific-honesty contract):

- a manifest whose generator was trained on another split (any split hash differing from the
  run's) is refused: its generator may have seen this run's validation or test images;
- images are used only as training data; the caller never puts them in validation or test;
- per class, at most ``floor(max_ratio * real training images of that class)`` images are used,
  the first ones in file order (deterministic, and nested as ``max_ratio`` grows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermkit.data.cache import cache_images
from dermkit.csvfile import read_csv_rows
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class

REQUIRED_COLUMNS = ("file", "class", "split_hash")


@dataclass
class SyntheticImages:
    """The synthetic images a run trains on.

    Attributes:
        cache_path: ``.npy`` cache, (M, S, S, 3) uint8, row i = image i; None when M = 0.
        labels: (M,) int64 class index (in the run's classes) per image.
        counts: synthetic images used per class (every run class, 0 where none).
        available: images the manifest lists per class (before ``max_ratio`` and ``classes``).
        manifest: the manifest CSV read.
    """

    cache_path: Path | None
    labels: np.ndarray
    counts: dict[str, int]
    available: dict[str, int]
    manifest: Path


def manifest_csv(path: str | Path) -> Path:
    """The manifest CSV for ``synth.manifest`` (the CSV itself or the folder holding it)."""
    path = Path(path).expanduser()
    csv_path = path / "manifest.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise DermkitError(f"synth.manifest={path}: no manifest.csv there. Pass the manifest.csv (or its folder) "
                           "written by python -m synth.generate.")
    return csv_path


def read_manifest_rows(csv_path: Path) -> list[dict[str, str]]:
    """The manifest's rows; checks the required columns."""
    rows = read_csv_rows(csv_path, REQUIRED_COLUMNS, "Synthetic manifest",
                         f"A synthetic manifest needs {', '.join(REQUIRED_COLUMNS)} (written by python -m synth.generate).")
    if not rows:
        raise DermkitError(f"{csv_path} lists no images; let python -m synth.generate finish some first.")
    return rows


def check_split_hash(csv_path: Path, rows: Sequence[Mapping[str, str]], split_hash: str) -> None:
    """Refuse a manifest made by a generator trained on another split.

    Raises:
        DermkitError: a row or the ``manifest.json`` header names a different split hash.
    """
    hashes = {row["split_hash"] for row in rows}
    header = csv_path.parent / "manifest.json"
    if header.is_file():
        try:
            hashes.add(str(json.loads(header.read_text()).get("split_hash", split_hash)))
        except json.JSONDecodeError as err:
            raise DermkitError(f"{header} is not valid JSON ({err}).") from None
    others = sorted(hashes - {split_hash})
    if others:
        raise DermkitError(
            f"Synthetic images in {csv_path} come from a generator trained on another split (split hash "
            f"{', '.join(others)}; this run's split is {split_hash}). Its generator may have seen this run's "
            "validation or test images. Use the same data settings (data.name, data.root, data.split_seed, "
            "data.val_fraction, data.test_fraction, data.split_file) as the generator, or generate images with "
            "a generator trained on this split.")


def load_synthetic(path: str | Path, classes: Sequence[str], real_counts: Mapping[str, int], split_hash: str,
                   image_size: int, cache_dir: str | Path, max_ratio: float = 1.0,
                   only_classes: Sequence[str] = ()) -> SyntheticImages:
    """Select and cache the synthetic training images of a run.

    Args:
        path: ``synth.manifest`` (the CSV or its folder).
        classes: the run's classes (index order of the labels).
        real_counts: real training images per class (the base of ``max_ratio``).
        split_hash: the run's split hash; the manifest must match it.
        image_size: side S the images are cached at (the model's input size).
        cache_dir: image cache root.
        max_ratio: at most this many synthetic images per real training image, per class.
        only_classes: classes to use (names or aliases); empty = every class in the manifest.

    Raises:
        DermkitError: missing manifest or PNG, split-hash mismatch, a class the run does not have,
            a requested class the manifest lacks, or a negative ``max_ratio``.
    """
    if max_ratio < 0:
        raise DermkitError(f"synth.max_ratio must be >= 0, got {max_ratio}.")
    csv_path = manifest_csv(path)
    rows = read_manifest_rows(csv_path)
    check_split_hash(csv_path, rows, split_hash)
    by_class: dict[str, list[Path]] = {}
    for row in rows:
        by_class.setdefault(canonical_class(row["class"]), []).append(csv_path.parent / row["file"])
    unknown = sorted(set(by_class) - set(classes))
    if unknown:
        raise DermkitError(f"{csv_path} holds images of {', '.join(unknown)}, which this dataset does not have "
                           f"(classes: {', '.join(classes)}). Choose the classes to add with synth.classes=[...].")
    wanted = [canonical_class(c) for c in only_classes] or list(by_class)
    absent = [c for c in wanted if c not in by_class]
    if absent:
        raise DermkitError(f"synth.classes asks for {', '.join(absent)} but {csv_path} has no images of it "
                           f"(it has {', '.join(sorted(by_class))}).")
    paths: list[Path] = []
    labels: list[int] = []
    counts = {c: 0 for c in classes}
    for index, name in enumerate(classes):
        if name not in wanted:
            continue
        limit = math.floor(max_ratio * real_counts.get(name, 0) + 1e-9)
        chosen = sorted(by_class[name])[:limit]
        paths += chosen
        labels += [index] * len(chosen)
        counts[name] = len(chosen)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DermkitError(f"{len(missing)} file(s) listed in {csv_path} do not exist (e.g. {missing[0]}). "
                           "Was the folder moved or pruned? Re-run python -m synth.generate on it.")
    cache = cache_images(paths, image_size, cache_dir, description="Caching synthetic images") if paths else None
    return SyntheticImages(cache.path if cache else None, np.asarray(labels, dtype=np.int64), counts,
                           {c: len(by_class.get(c, [])) for c in classes}, csv_path)
