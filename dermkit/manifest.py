"""The synthetic-image manifest: the file format ``synth.generate`` writes and other stages read.

A synthetic folder ``OUT`` holds:

* ``OUT/manifest.csv``: one row per finished PNG, columns :data:`COLUMNS` in that order (``file``
  relative to ``OUT``, ``class``, ``seed``, ``steps``, ``guidance``, ``model_hash``,
  ``split_hash``), ``\\n`` line ends. A reader needs only :data:`REQUIRED_COLUMNS`.
* ``OUT/manifest.json``: the header, a JSON object (indent 2, trailing newline) with the fields
  :data:`HEADER_FIELDS` describes, in that order (:func:`generator_header`). Folders written
  before a field existed lack it: readers treat every field as optional unless they need it
  (:func:`require_header`).

Every write is atomic (:func:`atomic_write_bytes`: a temporary ``NAME.<pid>.partial`` in the same
folder, then ``os.replace``), so a reader never sees half a file. How ``synth.generate`` fills a
folder (file names, seeds, the lock for concurrent writers, its sampler-settings rule) is the
writer's business (:mod:`synth.manifest`); what the files mean is this module's.

The split a manifest was made on is checked with the one split policy
(:func:`check_manifest_split`, :func:`dermkit.data.split_policy.check_same_split`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dermkit.csvfile import read_csv_rows
from dermkit.data.split_policy import check_same_split
from dermkit.errors import DermkitError

COLUMNS: tuple[str, ...] = ("file", "class", "seed", "steps", "guidance", "model_hash", "split_hash")
REQUIRED_COLUMNS: tuple[str, ...] = ("file", "class", "split_hash")
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
TMP_SUFFIX = ".partial"
# The keys of the header's "settings": one folder holds images of one way of sampling.
SETTINGS_KEYS: tuple[str, ...] = ("model_hash", "sampler", "steps", "guidance", "seed")
HEADER_FIELDS: dict[str, str] = {
    "model": "the generator folder (absolute path)",
    "model_hash": "hash of the generator's weights (synth.generator.model_hash)",
    "split_hash": "hash of the data split whose training part the generator saw",
    "label_fraction": "the label fraction of the training split the generator was trained on (synth.train's "
                      "data.fraction; null when its generator does not record it)",
    "classes": "the generator's classes, in label order",
    "image_size": "side in pixels of the images",
    "settings": f"the sampler settings of the folder's first run ({', '.join(SETTINGS_KEYS)})",
}


def synthetic_limit(ratio: float, real_count: int) -> int:
    """The most synthetic images of a class a fine-tuning run with ``synth.max_ratio=ratio`` uses:
    ``floor(ratio x real_count)`` (the tolerance keeps e.g. 0.1 x 30 at 3). ``finetune.synthetic`` takes
    that many, and ``synth.generate --ratio`` makes that many, so that it makes none a run cannot use."""
    return math.floor(ratio * real_count + 1e-9)


@dataclass(frozen=True)
class ManifestRow:
    """One finished synthetic image (``klass`` is written as the ``class`` column)."""

    file: str
    klass: str
    seed: int
    steps: int
    guidance: float
    model_hash: str
    split_hash: str

    def as_csv(self) -> dict[str, Any]:
        """The row as ``{column: value}`` in :data:`COLUMNS` order."""
        row = asdict(self)
        row["class"] = row.pop("klass")
        return {c: row[c] for c in COLUMNS}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never half a file."""
    # The process id keeps concurrent writers of one folder off each other's temporary files.
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    # No fsync: a killed process cannot leave a half-renamed file, and fsync per image costs more
    # than sampling a small one; power loss is not what this guards against.
    tmp.write_bytes(data)
    os.replace(tmp, path)


def manifest_csv(path: str | Path, option: str) -> Path:
    """The manifest CSV a user named: the CSV itself or the folder holding it.

    Args:
        path: the value given.
        option: how the user gave it (``synth.manifest``, ``--synthetic``), for the message.

    Raises:
        DermkitError: there is no manifest.csv there.
    """
    path = Path(path).expanduser()
    csv_path = path / MANIFEST_CSV if path.is_dir() else path
    if not csv_path.is_file():
        raise DermkitError(f"{option}={path}: no {MANIFEST_CSV} there. Pass the {MANIFEST_CSV} (or its folder) "
                           "written by python -m synth.generate.")
    return csv_path


def read_manifest_rows(csv_path: Path, required: Sequence[str] = REQUIRED_COLUMNS) -> list[dict[str, str]]:
    """The rows of a manifest CSV as ``{column: text}``, checked for the ``required`` columns.

    Raises:
        DermkitError: a missing file or column, or a row with more or fewer fields than the header
            (naming the line).
    """
    hint = f"A synthetic manifest needs the columns {', '.join(required)} (written by python -m synth.generate)."
    return read_csv_rows(csv_path, required, "Synthetic manifest", hint)


def read_manifest(out_dir: str | Path) -> list[ManifestRow]:
    """The typed rows of ``OUT/manifest.csv`` (empty when there is none yet); needs every column.

    Raises:
        DermkitError: the file lacks a column of :data:`COLUMNS` or holds a malformed row.
    """
    path = Path(out_dir) / MANIFEST_CSV
    if not path.is_file():
        return []
    rows = read_manifest_rows(path, COLUMNS)
    try:
        return [ManifestRow(r["file"], r["class"], int(r["seed"]), int(r["steps"]), float(r["guidance"]),
                            r["model_hash"], r["split_hash"]) for r in rows]
    except (TypeError, ValueError) as err:
        raise DermkitError(f"{path} has a malformed row ({err}); it was not written by python -m "
                           "synth.generate.") from None


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """A manifest-style CSV file's bytes: a header of ``columns``, then ``rows``, ``\n`` line ends."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def write_manifest(out_dir: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Atomically replace ``OUT/manifest.csv`` with ``rows``."""
    path = Path(out_dir) / MANIFEST_CSV
    atomic_write_bytes(path, csv_bytes(COLUMNS, (r.as_csv() for r in rows)))
    return path


def generator_header(model: str, model_hash: str, split_hash: str, label_fraction: float | None,
                     classes: Sequence[str], image_size: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``manifest.json`` header of a generator's folder, fields in :data:`HEADER_FIELDS` order."""
    values = {"model": model, "model_hash": model_hash, "split_hash": split_hash, "label_fraction": label_fraction,
              "classes": list(classes), "image_size": image_size, "settings": settings}
    return {field: values[field] for field in HEADER_FIELDS}  # the order manifests have always had


def read_header(out_dir: str | Path) -> dict[str, Any] | None:
    """``OUT/manifest.json`` as a dict, or None when the folder has none.

    Raises:
        DermkitError: the file is not valid JSON, or not a JSON object.
    """
    path = Path(out_dir) / MANIFEST_JSON
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DermkitError(f"{path} is not valid JSON ({err}); it was not written by python -m "
                           "synth.generate.") from None
    if not isinstance(content, dict):
        raise DermkitError(f"{path} is not a JSON object; it was not written by python -m synth.generate.")
    return content


def require_header(out_dir: str | Path, fields: Sequence[str], option: str) -> dict[str, Any]:
    """``OUT/manifest.json``, which must exist and hold ``fields``.

    Args:
        out_dir: the synthetic folder.
        fields: header fields the caller needs (keys of :data:`HEADER_FIELDS`).
        option: how the user named the folder (``--synthetic``), for the message.

    Raises:
        DermkitError: no header, or one lacking a field (a folder older than the field).
    """
    header = read_header(out_dir)
    if header is None:
        raise DermkitError(f"{out_dir} has no {MANIFEST_JSON}: pass {option} with a folder written by "
                           "python -m synth.generate.")
    missing = [f for f in fields if f not in header]
    if missing:
        raise DermkitError(f"{Path(out_dir) / MANIFEST_JSON} lacks {', '.join(missing)}: re-run python -m "
                           "synth.generate with the same --model and --out to record it.")
    return header


def write_header(out_dir: str | Path, header: dict[str, Any]) -> Path:
    """Atomically write ``OUT/manifest.json``."""
    path = Path(out_dir) / MANIFEST_JSON
    atomic_write_bytes(path, (json.dumps(header, indent=2) + "\n").encode())
    return path


def check_manifest_split(csv_path: Path, row_hashes: Iterable[str], split_hash: str) -> None:
    """Refuse a manifest whose rows or header name another split than ``split_hash``.

    Args:
        csv_path: the manifest CSV (its folder's ``manifest.json`` is read too).
        row_hashes: the ``split_hash`` of each row.
        split_hash: this run's split hash.

    Raises:
        DermkitError: from :func:`dermkit.data.split_policy.check_same_split`.
    """
    header = read_header(csv_path.parent) or {}
    hashes = [*row_hashes, str(header.get("split_hash") or "")]
    check_same_split(hashes, split_hash, csv_path, made_by="Its generator",
                     remedy="generate images with a generator trained on this split (python -m synth.train with "
                            "this run's data settings, then python -m synth.generate)")
