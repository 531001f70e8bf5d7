"""Synthetic training images from a ``synth.generate`` manifest.

The manifest (``OUT/manifest.csv``) lists finished PNGs with at least the columns ``file``
(relative to the manifest's folder), ``class`` and ``split_hash``; ``OUT/manifest.json`` may name
the split hash and the generator's label fraction too. Stages exchange files, not code: the format
and its readers are :mod:`dermkit.manifest`, the split-hash rule :mod:`dermkit.data.split_policy`.

Rules (the scientific-honesty contract):

- a manifest whose generator was trained on another split (any split hash differing from the
  run's) is refused: its generator may have seen this run's validation or test images;
- a manifest whose generator saw more labelled images than the run may use (its label fraction,
  recorded as ``label_fraction`` in ``manifest.json``, above the run's ``data.fraction``) is
  refused unless ``synth.allow_extra_labels`` says so: its images carry those labels. Below
  fraction 1 a manifest without the record is refused too;
- every listed file must resolve (symlinks followed) inside the manifest's own folder and must not
  be an image of the dataset: a row cannot smuggle a validation or test image in as "synthetic";
- images are used only as training data; the caller never puts them in validation or test;
- per class, at most ``floor(max_ratio * real training images of that class)`` images are used,
  the first ones in file order (deterministic, and nested as ``max_ratio`` grows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermkit.data.cache import cache_images
from dermkit.errors import DermkitError
from dermkit.manifest import (MANIFEST_JSON, check_manifest_split, manifest_csv, read_header, read_manifest_rows,
                              synthetic_limit)
from dermkit.vocab import canonical_class


@dataclass
class SyntheticImages:
    """The synthetic images a run trains on.

    Attributes:
        cache_path: ``.npy`` cache, (M, S, S, 3) uint8, row i = image i; None when M = 0.
        labels: (M,) int64 class index (in the run's classes) per image.
        counts: synthetic images used per class (every run class, 0 where none).
        available: images the manifest lists per class (before ``max_ratio`` and ``classes``).
        manifest: the manifest CSV read.
        label_fraction: the label fraction the generator was trained on (None: not recorded).
    """

    cache_path: Path | None
    labels: np.ndarray
    counts: dict[str, int]
    available: dict[str, int]
    manifest: Path
    label_fraction: float | None = None


def read_rows(path: str | Path) -> tuple[Path, list[dict[str, str]]]:
    """The manifest CSV ``synth.manifest`` names (the CSV or its folder) and its rows.

    Raises:
        DermkitError: no manifest there, missing columns, or no rows.
    """
    csv_path = manifest_csv(path, "synth.manifest")
    rows = read_manifest_rows(csv_path)
    if not rows:
        raise DermkitError(f"{csv_path} lists no images; let python -m synth.generate finish some first.")
    return csv_path, rows


def check_label_fraction(csv_path: Path, fraction: float, allow_extra_labels: bool) -> float | None:
    """Refuse a manifest whose generator was trained on more labelled images than the run may use.

    Label fractions are nested (:meth:`dermkit.data.prepare.PreparedData.indices`), so on one split
    (checked by :func:`dermkit.manifest.check_manifest_split`) the generator's labelled images are a
    subset of the run's exactly when its label fraction is at most ``fraction``.

    Args:
        csv_path: the manifest CSV (its ``manifest.json`` holds ``label_fraction``).
        fraction: the run's ``data.fraction``.
        allow_extra_labels: ``synth.allow_extra_labels``: accept a larger generator fraction (a
            deliberate comparison; the run records it).

    Returns:
        The generator's label fraction, or None when the manifest does not record it.

    Raises:
        DermkitError: the generator's fraction exceeds ``fraction``, or ``fraction`` < 1 and the
            manifest does not record the generator's fraction (unless ``allow_extra_labels``).
    """
    header = read_header(csv_path.parent) or {}
    recorded = header.get("label_fraction")
    if allow_extra_labels:
        return None if recorded is None else float(recorded)
    if recorded is None:
        if fraction >= 1.0:
            return None  # any generator of this split saw only training labels, all of which the run has
        raise DermkitError(
            f"{csv_path.parent / MANIFEST_JSON} does not record the label fraction its generator was trained on, "
            f"so its images cannot be checked against data.fraction={fraction:g}. Re-run python -m synth.generate "
            "with the same --model and --out to record it (retrain a generator older than the record), or set "
            "synth.allow_extra_labels=true to use it anyway.")
    if float(recorded) > fraction + 1e-9:
        raise DermkitError(
            f"Synthetic images in {csv_path} come from a generator trained on label fraction {float(recorded):g} of "
            f"the training split, more labelled images than this run's data.fraction={fraction:g}: they carry labels "
            f"this run must not have. Use a generator trained with data.fraction={fraction:g} (python -m synth.train "
            "data.fraction=...), or set synth.allow_extra_labels=true to compare on purpose.")
    return float(recorded)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copies_of_dataset_images(files: Sequence[Path], dataset_files: Sequence[Path]) -> dict[Path, Path]:
    """Files whose bytes equal a dataset image's: ``{file: dataset image}``.

    Only files of a size some dataset image has are hashed, so a folder of generated PNGs costs one
    ``stat`` per dataset image and almost no reading.
    """
    by_size: dict[int, list[Path]] = {}
    for image in dataset_files:
        try:
            by_size.setdefault(image.stat().st_size, []).append(image)
        except OSError:
            continue  # a missing dataset image is the reader's concern, not this check's
    copies: dict[Path, Path] = {}
    digests: dict[Path, str] = {}
    for file in files:
        try:
            same_size = by_size.get(file.stat().st_size, [])
        except OSError:
            continue  # a missing synthetic file is reported where the images are cached
        file_digest = _digest(file) if same_size else ""
        for image in same_size:
            if image not in digests:
                digests[image] = _digest(image)
            if digests[image] == file_digest:
                copies[file] = image
                break
    return copies


def check_files(csv_path: Path, rows: Sequence[Mapping[str, str]], dataset_files: Sequence[Path]) -> None:
    """Every row's file must resolve inside the manifest's folder and must not be a dataset image.

    Symlinks are resolved first, so a link inside the folder to an image elsewhere is refused too;
    a byte-identical copy of a dataset image is refused as well (:func:`copies_of_dataset_images`).

    Raises:
        DermkitError: naming the manifest, the line and the file.
    """
    folder = csv_path.parent.resolve()
    dataset = {p.resolve() for p in dataset_files}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        resolved = (folder / row["file"]).resolve()
        where = f"{csv_path}, line {line} (file {row['file']!r})"
        if not resolved.is_relative_to(folder):
            raise DermkitError(f"{where} resolves to {resolved}, outside the manifest's folder {folder}. Synthetic "
                               "images must lie in their manifest's folder, as python -m synth.generate writes them: "
                               "remove the row or regenerate the folder.")
        if resolved in dataset:
            raise DermkitError(f"{where} is {resolved}, an image of the dataset this run trains and evaluates on, "
                               "not a synthetic image. Remove the row, or keep synthetic folders outside the dataset.")
    files = [(folder / row["file"]).resolve() for row in rows]
    copies = copies_of_dataset_images(files, sorted(dataset))
    for line, (row, file) in enumerate(zip(rows, files), start=2):
        if file in copies:
            raise DermkitError(f"{csv_path}, line {line} (file {row['file']!r}) has the same bytes as the dataset image "
                               f"{copies[file]}: a copy of a real image is not a synthetic image, and it may be a "
                               "validation or test image. Remove the row (and the file) or regenerate the folder.")


def files_by_class(csv_path: Path, rows: Sequence[Mapping[str, str]], classes: Sequence[str],
                   only_classes: Sequence[str]) -> dict[str, list[Path]]:
    """The manifest's files per (canonical) class, checked against the run's and the requested classes.

    Raises:
        DermkitError: a class the run does not have, or a requested class the manifest lacks.
    """
    by_class: dict[str, list[Path]] = {}
    for row in rows:
        by_class.setdefault(canonical_class(row["class"]), []).append(csv_path.parent / row["file"])
    unknown = sorted(set(by_class) - set(classes))
    if unknown:
        raise DermkitError(f"{csv_path} holds images of {', '.join(unknown)}, which this dataset does not have "
                           f"(classes: {', '.join(classes)}). Choose the classes to add with synth.classes=[...].")
    absent = [c for c in (canonical_class(c) for c in only_classes) if c not in by_class]
    if absent:
        raise DermkitError(f"synth.classes asks for {', '.join(absent)} but {csv_path} has no images of it "
                           f"(it has {', '.join(sorted(by_class))}).")
    return by_class


def load_synthetic(path: str | Path, classes: Sequence[str], real_counts: Mapping[str, int], split_hash: str,
                   image_size: int, cache_dir: str | Path, max_ratio: float = 1.0,
                   only_classes: Sequence[str] = (), *, fraction: float, dataset_files: Sequence[Path],
                   allow_extra_labels: bool = False, color_constancy: str = "none") -> SyntheticImages:
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
        fraction: the run's label fraction (``data.fraction``); see :func:`check_label_fraction`.
        dataset_files: the image files of the run's dataset; no manifest row may be one of them.
        allow_extra_labels: accept a generator trained on a larger label fraction.
        color_constancy: the run's ``data.color_constancy``, applied to the synthetic images as to
            the real ones (images of a generator trained on corrected images stay as they are: a
            second correction changes a pixel by at most 1).

    Raises:
        DermkitError: missing manifest or PNG, split-hash mismatch, a generator that saw more labels
            than the run, a row outside the manifest's folder or naming a dataset image, a class the
            run does not have, a requested class the manifest lacks, or a negative ``max_ratio``.
    """
    if max_ratio < 0:
        raise DermkitError(f"synth.max_ratio must be >= 0, got {max_ratio}.")
    csv_path, rows = read_rows(path)
    check_manifest_split(csv_path, (row["split_hash"] for row in rows), split_hash)
    label_fraction = check_label_fraction(csv_path, fraction, allow_extra_labels)
    check_files(csv_path, rows, dataset_files)
    by_class = files_by_class(csv_path, rows, classes, only_classes)
    wanted = [canonical_class(c) for c in only_classes] or list(by_class)
    paths: list[Path] = []
    labels: list[int] = []
    counts = {c: 0 for c in classes}
    for index, name in enumerate(classes):
        if name not in wanted:
            continue
        limit = synthetic_limit(max_ratio, real_counts.get(name, 0))
        chosen = sorted(by_class[name])[:limit]
        paths += chosen
        labels += [index] * len(chosen)
        counts[name] = len(chosen)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DermkitError(f"{len(missing)} file(s) listed in {csv_path} do not exist (e.g. {missing[0]}). "
                           "Was the folder moved or pruned? Re-run python -m synth.generate on it.")
    cache = cache_images(paths, image_size, cache_dir, description="Caching synthetic images",
                         color_constancy=color_constancy) if paths else None
    return SyntheticImages(cache.path if cache else None, np.asarray(labels, dtype=np.int64), counts,
                           {c: len(by_class.get(c, [])) for c in classes}, csv_path, label_fraction)
