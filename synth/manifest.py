"""The synthetic-image manifest: which PNGs of an output folder are complete, and how each was made.

``OUT/manifest.csv`` has one row per finished image with the columns :data:`COLUMNS` (``file`` is
relative to ``OUT``); ``OUT/manifest.json`` is the header naming the generator (model hash, split
hash). The fine-tuning stage reads ``file``, ``class`` and ``split_hash``: keep these names.

Every write is atomic (a temporary file in the same folder, then ``os.replace``), and a row is
added only after its PNG has been renamed into place, so the manifest never lists a missing or
partial file, whatever moment a run is interrupted at.

Several ``synth.generate`` processes may write into one folder (e.g. one per class): each adds its
rows with :func:`update_manifest`, which reads, merges and replaces the CSV under an exclusive
``fcntl.flock`` on ``OUT/.manifest.lock`` (Linux/macOS), so no process drops another's rows.
Temporary files carry the writer's process id, and :func:`remove_partials` leaves those of live
processes alone.

The header records the sampler settings of the folder's first run (``settings``: model hash,
sampler, steps, guidance, seed); :func:`check_same_settings` refuses a run with other ones, so one
folder never mixes images made in different ways.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermkit.errors import DermkitError

COLUMNS: tuple[str, ...] = ("file", "class", "seed", "steps", "guidance", "model_hash", "split_hash")
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
LOCK_FILE = ".manifest.lock"
TMP_SUFFIX = ".partial"
SETTINGS_KEYS: tuple[str, ...] = ("model_hash", "sampler", "steps", "guidance", "seed")


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
    # The process id keeps concurrent writers of one folder off each other's temporary files.
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
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


def _writer_alive(partial: Path) -> bool:
    """Whether another live process may still be writing ``partial`` (``NAME.<pid>.partial``)."""
    pid_text = partial.name[:-len(TMP_SUFFIX)].rsplit(".", 1)[-1]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_partials(out_dir: Path) -> int:
    """Delete temporary files that interrupted runs (or this process) left behind; returns how many.

    Temporary files of other live processes writing into the same folder are kept.
    """
    leftovers = [p for p in out_dir.rglob(f"*{TMP_SUFFIX}") if not _writer_alive(p)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


@contextlib.contextmanager
def manifest_lock(out_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder's manifest (``OUT/.manifest.lock``) while inside.

    The lock is released by the kernel when the process dies, so a killed run never leaves it held.
    """
    path = Path(out_dir) / LOCK_FILE
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def update_manifest(out_dir: str | Path, new_rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """Add rows to ``OUT/manifest.csv`` without losing rows other processes added meanwhile.

    Reads the current manifest, appends the rows whose file it does not list yet and replaces it
    atomically, all under :func:`manifest_lock`. Returns the merged rows.
    """
    with manifest_lock(out_dir):
        rows = read_manifest(out_dir)
        listed = {r.file for r in rows}
        for row in new_rows:
            if row.file not in listed:
                rows.append(row)
                listed.add(row.file)
        write_manifest(out_dir, rows)
    return rows


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


def folder_settings(header: dict[str, Any] | None, rows: list[ManifestRow]) -> dict[str, Any]:
    """The sampler settings a folder's images were made with, as far as it records them.

    ``header["settings"]`` where present; for folders written before it, the steps and guidance
    (and model hash) the rows record, when they are all the same.
    """
    if header and isinstance(header.get("settings"), dict):
        return {k: header["settings"][k] for k in SETTINGS_KEYS if k in header["settings"]}
    settings: dict[str, Any] = {}
    for key, values in (("steps", {r.steps for r in rows}), ("guidance", {r.guidance for r in rows}),
                        ("model_hash", {r.model_hash for r in rows})):
        if len(values) == 1:
            settings[key] = values.pop()
        elif len(values) > 1:
            settings[key] = sorted(values)  # already mixed: any new setting differs
    return settings


def check_same_settings(out_dir: str | Path, settings: dict[str, Any], rows: list[ManifestRow]) -> None:
    """Refuse to add images made with other sampler settings than the folder's first run.

    Raises:
        DermkitError: naming the differing keys, their values in the folder, and what to do.
    """
    old = folder_settings(read_header(out_dir), rows)
    differ = [k for k in SETTINGS_KEYS if k in old and k in settings and old[k] != settings[k]]
    if differ:
        raise DermkitError(f"Output folder {out_dir} holds images made with other settings: "
                           + ", ".join(f"{k}={old[k]!r} there, {settings[k]!r} now" for k in differ)
                           + ". One folder holds one way of sampling: pass another --out for these settings, "
                           "or the folder's settings to extend it.")


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

