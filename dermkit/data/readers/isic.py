"""ISIC 2018 (task 3) and ISIC 2019 ground truth: an ``image`` column plus one-hot class columns.

``data.root`` is a folder holding:

- the ground-truth CSV: the file whose name contains ``GroundTruth`` (e.g.
  ``ISIC2018_Task3_Training_GroundTruth.csv``, ``ISIC_2019_Training_GroundTruth.csv``), else the only
  CSV that is not a metadata file. Columns: ``image`` and one-hot class columns, named in the class
  vocabulary (2018: ``MEL,NV,BCC,AKIEC,BKL,DF,VASC``; 2019: ``MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``).
  The weighting columns of ISIC 2019's test ground truth (``score_weight``, ``validation_weight``)
  are ignored.
- the images, ``<image>.jpg`` or ``.png``, in the root or any folder below it (e.g.
  ``ISIC_2019_Training_Input/``).
- optionally ISIC 2019's metadata CSV (name containing ``Metadata``): its ``lesion_id`` column
  groups images of one lesion. Without it, lesions are unknown and each image is its own group.

A row whose one-hot marks ``UNK``, no class, or several classes, and a listed image that is not
there, are errors; with ``data.skip_bad=true`` such rows are skipped and listed.
"""

from __future__ import annotations

from pathlib import Path

from dermkit.console import console
from dermkit.data.readers import register_reader
from dermkit.csvfile import read_csv_rows
from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class, sort_classes

IMAGE_COLUMN = "image"
UNKNOWN_COLUMN = "UNK"
_IGNORED_COLUMNS = frozenset({"score_weight", "validation_weight"})
_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _csv_files(root: Path, keyword: str) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv"  # any letter case
                  and keyword.lower() in p.name.lower())


def find_ground_truth_csv(root: Path) -> Path:
    """The ground-truth CSV in ``root`` (see the module docstring for how it is chosen).

    Raises:
        DermkitError: no CSV, or several candidates (named, so the user can remove the others).
    """
    candidates = _csv_files(root, "groundtruth")
    if not candidates:
        candidates = [p for p in _csv_files(root, "") if "metadata" not in p.name.lower()]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DermkitError(f"No ground-truth CSV in {root}. An ISIC dataset folder holds e.g. "
                           "ISIC_2019_Training_GroundTruth.csv (columns image, MEL, NV, ...) and the images.")
    raise DermkitError(f"Several ground-truth CSVs in {root}: {', '.join(p.name for p in candidates)}. "
                       "Keep one per folder (e.g. point data.root at a folder with the training files only).")


def _class_columns(path: Path, header: list[str]) -> dict[str, str | None]:
    """Map each one-hot column to its canonical class (None for ``UNK``)."""
    columns: dict[str, str | None] = {}
    for column in header:
        if column == IMAGE_COLUMN or column in _IGNORED_COLUMNS:
            continue
        if column.strip().upper() == UNKNOWN_COLUMN:
            columns[column] = None
            continue
        try:
            columns[column] = canonical_class(column)
        except DermkitError as err:
            raise DermkitError(f"Ground-truth file {path}, column {column!r}: {err}") from None
    if not any(columns.values()):
        raise DermkitError(f"Ground-truth file {path} has no class columns (found: {', '.join(header)}); "
                           "expected one-hot columns such as MEL, NV, BCC, AKIEC, BKL, DF, VASC.")
    return columns


def _row_label(row: dict[str, str], columns: dict[str, str | None]) -> str:
    """The canonical class a one-hot row marks; raises ValueError saying what is wrong with it."""
    marked = []
    for column in columns:
        try:
            value = float(row[column] or "nan")
        except ValueError:
            raise ValueError(f"non-numeric value {row[column]!r} in column {column}") from None
        if value >= 0.5:
            marked.append(column)
    if len(marked) != 1:
        raise ValueError("no class marked" if not marked else f"several classes marked ({', '.join(marked)})")
    label = columns[marked[0]]
    if label is None:
        raise ValueError(f"class {UNKNOWN_COLUMN} (unknown diagnosis)")
    return label


def _index_images(root: Path) -> dict[str, Path]:
    """``{stem: path}`` of every .jpg/.png below ``root``; a stem found twice is an error."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in _EXTENSIONS or not path.is_file():
            continue
        if path.stem in index:
            raise DermkitError(f"Image {path.stem} is in {root} twice: {index[path.stem]} and {path}. "
                               "Remove one copy so the label applies to one file.")
        index[path.stem] = path
    return index


def _lesion_ids(root: Path) -> dict[str, str]:
    """``{image: lesion_id}`` from the metadata CSV in ``root``, or {} when there is none."""
    metadata = _csv_files(root, "metadata")
    if not metadata:
        return {}
    if len(metadata) > 1:
        raise DermkitError(f"Several metadata CSVs in {root}: {', '.join(p.name for p in metadata)}. Keep one.")
    rows = read_csv_rows(metadata[0], [IMAGE_COLUMN], "Metadata file", "Check data.root.")
    if rows and "lesion_id" not in rows[0]:
        console.print(f"[yellow]warning:[/] {metadata[0]} has no lesion_id column; each image is split as "
                      "its own lesion.", highlight=False)
        return {}
    return {row[IMAGE_COLUMN]: row["lesion_id"] for row in rows if row.get("lesion_id")}


@register_reader("isic")
def read_isic(root: Path, skip_bad: bool) -> ImageSource:
    """Read an ISIC 2018/2019 folder (ground-truth CSV, images, optional metadata CSV).

    Raises:
        DermkitError: missing folder or CSV, missing columns, a class column outside the
            vocabulary, bad rows (UNK / none / several classes) or missing images, all named;
            with ``skip_bad`` bad rows and missing images are skipped and listed instead.
    """
    if not root.is_dir():
        raise DermkitError(f"ISIC folder {root} does not exist. Set data.root to the folder holding the "
                           "ground-truth CSV and the images.")
    gt_path = find_ground_truth_csv(root)
    rows = read_csv_rows(gt_path, [IMAGE_COLUMN], "Metadata file", "Check data.root.")
    if not rows:
        raise DermkitError(f"Ground-truth file {gt_path} lists no images.")
    columns = _class_columns(gt_path, list(rows[0]))
    images = _index_images(root)
    lesions = _lesion_ids(root)
    records: list[ImageRecord] = []
    skipped: list[tuple[str, str]] = []
    for row in rows:
        image_id = row[IMAGE_COLUMN]
        try:
            label = _row_label(row, columns)
        except ValueError as err:
            skipped.append((image_id, f"{gt_path.name}: {err}"))
            continue
        if image_id not in images:
            skipped.append((image_id, "image file not found"))
            continue
        records.append(ImageRecord(image_id, images[image_id], label, lesions.get(image_id)))
    if skipped and not skip_bad:
        shown = "; ".join(f"{name}: {why}" for name, why in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise DermkitError(f"{len(skipped)} image(s) listed in {gt_path} cannot be used: {shown}{more}. "
                           "Fix the rows or files, or set data.skip_bad=true to skip them.")
    if not records:
        raise DermkitError(f"No usable images in {root}: every row of {gt_path.name} was skipped.")
    records.sort(key=lambda r: r.image_id)
    return ImageSource("isic", root, records, sort_classes({r.label for r in records if r.label}), skipped=skipped)
