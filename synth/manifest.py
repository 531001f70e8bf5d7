"""The synthetic-image manifest: which PNGs of an output folder are complete, and how each was made.

``OUT/manifest.csv`` has one row per finished image with the columns :data:`COLUMNS` (``file`` is
relative to ``OUT``); ``OUT/manifest.json`` is the header naming the generator (model hash, split
hash). The fine-tuning stage reads ``file``, ``class`` and ``split_hash``: keep these names.

Every write is atomic (a temporary file in the same folder, then ``os.replace``), and a row is
added only after its PNG has been renamed into place, so the manifest never lists a missing or
partial file, whatever moment a run is interrupted at.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermkit.errors import DermkitError

COLUMNS: tuple[str, ...] = ("file", "class", "seed", "steps", "guidance", "model_hash", "split_hash")
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
TMP_SUFFIX = ".partial"


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
        row = asdict(self)
        row["class"] = row.pop("klass")
        return {c: row[c] for c in COLUMNS}


def image_seed(seed: int, klass: str, index: int) -> int:
    """The seed of image ``index`` of class ``klass`` in a run with base ``seed`` (63-bit).

    It depends on nothing else, so a resumed or re-batched run draws the same images.
    """
    digest = hashlib.sha256(f"{seed}:{klass}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_file(klass: str, index: int) -> str:
    """The path of image ``index`` of a class, relative to the output folder."""
    return f"{klass}/{klass}_{index:06d}.png"


def image_index(file: str) -> int:
    """Inverse of :func:`image_file`: the index in ``mel/mel_000012.png`` is 12."""
    return int(Path(file).stem.rsplit("_", 1)[1])


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    # No fsync: a killed process cannot leave a half-renamed file, and fsync per image costs more
    # than sampling a small one; power loss is not what this guards against.
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (S, S, 3) uint8 image atomically: a killed run leaves no partial PNG under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    _atomic_write_bytes(path, buffer.getvalue())


def remove_partials(out_dir: Path) -> int:
    """Delete temporary files an interrupted run left behind; returns how many."""
    leftovers = list(out_dir.rglob(f"*{TMP_SUFFIX}"))
    for path in leftovers:
        path.unlink()
    return len(leftovers)


def read_manifest(out_dir: str | Path) -> list[ManifestRow]:
    """The rows of ``OUT/manifest.csv`` (empty when there is none yet).

    Raises:
        DermkitError: the file lacks the expected columns or holds a malformed row.
    """
    path = Path(out_dir) / MANIFEST_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DermkitError(f"{path} lacks the columns {sorted(missing)}; it was not written by synth.generate. "
                               "Use another --out folder.")
        try:
            return [ManifestRow(r["file"], r["class"], int(r["seed"]), int(r["steps"]), float(r["guidance"]),
                                r["model_hash"], r["split_hash"]) for r in reader]
        except (TypeError, ValueError) as err:
            raise DermkitError(f"{path} has a malformed row ({err}). Use another --out folder.") from None


def write_manifest(out_dir: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Atomically replace ``OUT/manifest.csv`` with ``rows``."""
    path = Path(out_dir) / MANIFEST_CSV
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.as_csv() for r in rows)
    _atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def read_header(out_dir: str | Path) -> dict[str, Any] | None:
    """``OUT/manifest.json`` as a dict, or None when the folder has none."""
    path = Path(out_dir) / MANIFEST_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DermkitError(f"{path} is not valid JSON ({err}). Use another --out folder.") from None


def write_header(out_dir: str | Path, header: dict[str, Any]) -> Path:
    """Atomically write ``OUT/manifest.json``."""
    path = Path(out_dir) / MANIFEST_JSON
    _atomic_write_bytes(path, (json.dumps(header, indent=2) + "\n").encode())
    return path


def check_same_generator(out_dir: str | Path, model_hash: str, rows: list[ManifestRow]) -> None:
    """Refuse to add images of one generator to a folder holding another generator's images.

    Raises:
        DermkitError: the header or a manifest row names a different model hash.
    """
    header = read_header(out_dir)
    hashes = {r.model_hash for r in rows} | ({header["model_hash"]} if header and "model_hash" in header else set())
    others = sorted(hashes - {model_hash})
    if others:
        raise DermkitError(f"Output folder {out_dir} holds images of another generator (model hash {others[0]}, "
                           f"this one is {model_hash}). Pass a new --out folder, or the --model that made them.")

