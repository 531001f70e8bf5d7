"""Dataset readers, one registry: ``READERS[name](root, skip_bad) -> ImageSource``.

Readers parse metadata and list files; they do not decode pixels (the image cache does, once).
:func:`read_source` checks what every reader returns: image ids are unique within a dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from dermkit.data.records import ImageRecord, ImageSource
from dermkit.errors import DermkitError
from dermkit.registry import Registry

ReaderFn = Callable[[Path, bool], ImageSource]
# The dataset formats (``data.name`` values); messages and ``--data`` list them sorted.
READERS: Registry[ReaderFn] = Registry("dataset format", sort_names=True)
register_reader = READERS.register  # decorator: ``@register_reader("name")`` above a reader function


def read_source(name: str, root: str | Path, skip_bad: bool = False) -> ImageSource:
    """Read a dataset with the reader registered as ``name``.

    Raises:
        DermkitError: unknown reader name, or a problem the reader reports.
    """
    _load_readers()
    source = READERS.lookup(name, key="data.name")(Path(root).expanduser(), skip_bad)
    check_unique_ids(source)
    return source


def check_unique_ids(source: ImageSource) -> None:
    """Refuse a dataset that lists one image id twice.

    Splits, label fractions and predictions are keyed by image id: a repeated id (a metadata row
    repeated with another diagnosis, or ``a.jpg`` and ``a.png`` in one folder) could put one image
    in training as one class and in validation as another. Not skippable with ``data.skip_bad``:
    which of the two entries is right is the user's call.

    Raises:
        DermkitError: an image id occurs more than once; the message lists the ids and their files.
    """
    seen: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in source.records:
        seen[record.image_id].append(record)
    repeated = {image_id: records for image_id, records in seen.items() if len(records) > 1}
    if not repeated:
        return

    def entries(records: list[ImageRecord]) -> str:
        files = [str(r.path) if r.path is not None else f"array row {r.array_index}" for r in records]
        labels = [r.label or "unlabeled" for r in records]
        return ", ".join(f"{f} ({label})" for f, label in zip(files, labels))

    shown = "; ".join(f"{image_id}: {entries(records)}" for image_id, records in list(repeated.items())[:5])
    more = f"; and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    raise DermkitError(f"Dataset {source.root} ({source.name}) lists {len(repeated)} image id(s) more than once "
                       f"({shown}{more}). Image ids must be unique: remove or rename the duplicate rows or files.")


def reader_names() -> list[str]:
    """The registered dataset formats (``data.name`` values), sorted."""
    _load_readers()
    return READERS.names()


def _load_readers() -> None:
    # Importing the reader modules registers them; done on first use, not at import time.
    from dermkit.data.readers import folder, ham10000, imagefolder, isic, medmnist  # noqa: F401

