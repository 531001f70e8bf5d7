"""The JSON a probe writes beside its table: printed on stdout (one line, to capture) and saved with ``--json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dermkit.console import console


def write_figures(figures: dict[str, Any], json_path: str | Path | None, *, echo: bool = True) -> None:
    """Print ``figures`` as one JSON line (when ``echo``) and write them, indented, to ``json_path`` when given.

    The parent folder is created, so ``--json docs/results/new/figures.json`` works on a fresh checkout.
    """
    if echo:
        print(json.dumps(figures))
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"Wrote {path}", highlight=False)
