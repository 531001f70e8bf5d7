"""Dataset readers, one registry: ``READERS[name](root, skip_bad) -> ImageSource``.

Readers parse metadata and list files; they do not decode pixels (the image cache does, once).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dermkit.data.records import ImageSource
from dermkit.errors import DermkitError, did_you_mean

ReaderFn = Callable[[Path, bool], ImageSource]
READERS: dict[str, ReaderFn] = {}


def register_reader(name: str) -> Callable[[ReaderFn], ReaderFn]:
    """Decorator adding a reader to :data:`READERS`."""

    def add(fn: ReaderFn) -> ReaderFn:
        if name in READERS:
            raise ValueError(f"reader {name!r} is registered twice")
        READERS[name] = fn
        return fn

    return add


def read_source(name: str, root: str | Path, skip_bad: bool = False) -> ImageSource:
    """Read a dataset with the reader registered as ``name``.

    Raises:
        DermkitError: unknown reader name, or a problem the reader reports.
    """
    _load_readers()
    if name not in READERS:
        raise DermkitError(f"Unknown dataset format data.name={name!r}.{did_you_mean(name, READERS)} "
                           f"Known: {', '.join(sorted(READERS))}.")
    return READERS[name](Path(root).expanduser(), skip_bad)


def _load_readers() -> None:
    # Importing the reader modules registers them; done on first use, not at import time.
    from dermkit.data.readers import folder, ham10000  # noqa: F401

    for optional in ("isic", "imagefolder", "medmnist"):
        try:
            __import__(f"dermkit.data.readers.{optional}")
        except ModuleNotFoundError as err:
            if err.name != f"dermkit.data.readers.{optional}":
                raise
