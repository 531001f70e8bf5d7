"""Helpers shared by the metadata readers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def find_image(folders: Iterable[Path], stem: str, extensions: Iterable[str]) -> Path | None:
    """The first ``folder/stem.ext`` that exists, or None."""
    for folder in folders:
        for ext in extensions:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None
