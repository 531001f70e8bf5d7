"""Helpers shared by the metadata readers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def index_images(folders: Iterable[Path], extensions: Sequence[str]) -> dict[str, Path]:
    """``{stem: file}`` of the image files directly in ``folders``, extensions matched in any letter case.

    A metadata file names ``ISIC_0024306``; the file may be ``ISIC_0024306.jpg`` or, copied from a
    camera or another system, ``ISIC_0024306.JPG``. Each folder is listed once (10,015 lookups of six
    spellings in five folders would be 300,000 ``stat`` calls). Where one stem has several files, the
    earlier folder wins, then the earlier extension of ``extensions``, then the lower-case spelling.

    Args:
        folders: the folders to look in, in order of preference (missing ones are skipped).
        extensions: lower-case suffixes with the dot (``.jpg``), in order of preference.
    """
    rank = {ext.lower(): i for i, ext in enumerate(extensions)}
    best: dict[str, tuple[tuple[int, int, bool], Path]] = {}
    for place, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() not in rank or not entry.is_file():
                    continue
                key = (place, rank[suffix.lower()], suffix != suffix.lower())
                if stem not in best or key < best[stem][0]:
                    best[stem] = (key, Path(entry.path))
    return {stem: path for stem, (_, path) in best.items()}
