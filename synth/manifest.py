"""How ``synth.generate`` fills a synthetic folder: file names, seeds, atomic PNGs, concurrent writers.

The file format (``OUT/manifest.csv`` columns, the ``OUT/manifest.json`` header, reading and
writing them) is :mod:`dermkit.manifest`, shared with the stages that read manifests; this module
is the writer's side.

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
import fcntl
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermkit.errors import DermkitError
from dermkit.manifest import (
    SETTINGS_KEYS,
    TMP_SUFFIX,
    ManifestRow,
    atomic_write_bytes,
    read_header,
    read_manifest,
    write_manifest,
)

LOCK_FILE = ".manifest.lock"


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


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (S, S, 3) uint8 image atomically: a killed run leaves no partial PNG under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


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

