"""``OUT/progress.json``: how far a long stage has got, readable from outside the process.

A rich progress bar draws only on a terminal. A stage that a grid runs writes into ``stage.log``,
and a run started with ``nohup`` has no terminal either, so for hours nothing would say how far
training or generation has got. The training stages (through :func:`dermkit.trainer.build_trainer`)
and ``synth.generate`` therefore also keep ``progress.json`` in their run folder up to date::

    {"done": 1234, "total": 20000, "unit": "steps", "updated": 1764790000.0}

``bench.grid.runner`` shows it beside each running step, with the rate and the time left.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class Progress:
    """A stage's progress: ``done`` of ``total`` ``unit`` (total 0: unknown), as of ``updated`` (epoch s)."""

    done: int
    total: int
    unit: str
    updated: float


def write_progress(folder: Path, done: int, total: int, unit: str) -> None:
    """Replace ``folder/progress.json`` in one step (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (PROGRESS_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(Progress(done, total, unit, time.time()))) + "\n")
    os.replace(tmp, folder / PROGRESS_FILE)


def read_progress(folder: Path) -> Progress | None:
    """``folder/progress.json``, or None when it is missing or unreadable (a display must not fail)."""
    try:
        data = json.loads((folder / PROGRESS_FILE).read_text())
        return Progress(int(data["done"]), int(data["total"]), str(data["unit"]), float(data["updated"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
