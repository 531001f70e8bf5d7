"""A clear error for a damaged checkpoint or weights file, before anything loads it.

A file damaged on disk (a full disk, a copy cut short, a kill outside Lightning's atomic save)
is caught by :func:`check_readable` before anything loads it: a checkpoint
(``.ckpt``, a zip archive) must have its central directory, and a ``.safetensors`` file must be
exactly as long as its header says. Both checks read only the file's ends, not its tensors.
:mod:`dermkit.checkpoint_io` keeps the previous ``last.ckpt`` as ``last.prev.ckpt``, which
:func:`check_resumable` points to. No Lightning import here: weights loaders use this module.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

from dermkit.errors import DermkitError

LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"


def damage(path: str | Path) -> str | None:
    """What is wrong with a ``.ckpt`` or ``.safetensors`` file, or None when it is whole.

    Args:
        path: an existing file; ``.safetensors`` by suffix, anything else is read as a
            ``torch.save`` zip archive (what Lightning writes).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    if path.suffix == ".safetensors":
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes)"
            header_len = struct.unpack("<Q", head)[0]
            if 8 + header_len > size:
                return f"is truncated ({size} bytes, its header alone needs {8 + header_len})"
            try:
                header = json.loads(handle.read(header_len))
            except ValueError:
                return "has an unreadable header"
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        expected = 8 + header_len + max(ends, default=0)
        if size < expected:
            return f"is truncated ({size} of {expected} bytes)"
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return f"is truncated or not a checkpoint ({size} bytes, no complete archive)"
    return None


def check_readable(path: str | Path, what_to_do: str) -> None:
    """Raise a one-line error naming ``path`` when it is damaged (see :func:`damage`).

    Args:
        path: the file about to be loaded.
        what_to_do: the end of the message, e.g. how to resume from an older checkpoint.

    Raises:
        DermkitError: the file is empty, truncated or not a checkpoint.
    """
    problem = damage(path)
    if problem:
        raise DermkitError(f"{path} {problem}. {what_to_do}")


def check_resumable(last: Path, restart_hint: str) -> None:
    """Refuse to resume from a damaged ``last.ckpt``, pointing at ``last.prev.ckpt`` when it is whole.

    Raises:
        DermkitError: ``last`` is damaged.
    """
    previous = last.with_name(PREVIOUS)
    if previous.is_file() and damage(previous) is None:
        hint = (f"The checkpoint before it is whole: run `mv {previous} {last}` and the same command to resume "
                f"from it, or {restart_hint}.")
    else:
        hint = f"No whole earlier checkpoint is left: {restart_hint}."
    check_readable(last, hint)


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks: names a checkpoint in a run's record."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
