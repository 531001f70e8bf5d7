"""Reading metadata CSVs with errors that name the file and the missing columns."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from dermkit.errors import DermkitError


def read_csv_rows(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts; the header must hold every ``required`` column."""
    if not path.is_file():
        raise DermkitError(f"Metadata file {path} does not exist. Check data.root.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DermkitError(f"Metadata file {path} lacks the column(s) {', '.join(missing)} "
                                   f"(found: {', '.join(header) or 'no header'}).")
            return [dict(row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DermkitError(f"Metadata file {path} is not a readable CSV file: {err}") from None


def find_image(folders: Iterable[Path], stem: str, extensions: Iterable[str]) -> Path | None:
    """The first ``folder/stem.ext`` that exists, or None."""
    for folder in folders:
        for ext in extensions:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return None
