"""Reading CSV files with required columns; errors name the file, the missing columns and the fix."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from dermkit.errors import DermkitError


def read_csv_rows(path: Path, required: Iterable[str], what: str = "CSV file", hint: str = "") -> list[dict[str, str]]:
    """All rows of a CSV file as dicts; the header must hold every ``required`` column.

    Args:
        path: the file.
        required: column names that must be in the header.
        what: how messages name the file (``"Metadata file"``, ``"Split file"``, ...).
        hint: what to do, appended to the message when the file is missing or lacks columns.

    Raises:
        DermkitError: the file is missing, unreadable, lacks columns, or has a row with more or
            fewer fields than the header (naming the line).
    """
    suffix = f" {hint}" if hint else ""
    if not path.is_file():
        raise DermkitError(f"{what} {path} does not exist.{suffix}")
    required = list(required)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DermkitError(f"{what} {path} lacks the column(s) {', '.join(missing)} "
                                   f"(found: {', '.join(header) or 'no header'}).{suffix}")
            rows: list[dict[str, str]] = []
            for row in reader:
                # DictReader pads a short row with None and puts a long row's extra fields under
                # the key None: either way the values may sit in the wrong columns.
                if None in row or None in row.values():
                    count = len(header) + len(row[None]) if None in row else sum(v is not None for v in row.values())
                    raise DermkitError(f"{what} {path}, line {reader.line_num}: {count} field(s), expected "
                                       f"{len(header)} ({', '.join(header)}). Fix or remove that row.")
                rows.append(dict(row))
            return rows
    except (UnicodeDecodeError, csv.Error) as err:
        raise DermkitError(f"{what} {path} is not a readable CSV file: {err}") from None
