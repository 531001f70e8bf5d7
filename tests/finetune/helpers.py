"""Helpers of the fine-tuning tests: a synth.generate-style manifest of easy-to-spot images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
# Synthetic test images are pure magenta: no real (demo) image is, so they are easy to spot.
MAGENTA = (255, 0, 255)


def write_manifest(folder: Path, split_hash: str, per_class: dict[str, int],
                   label_fraction: float | None = None) -> Path:
    """A synth.generate-style folder: magenta PNGs and manifest.csv (file, class, split_hash, ...).

    With ``label_fraction``, also the ``manifest.json`` header recording the generator's label fraction.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for klass, n in per_class.items():
        (folder / klass).mkdir(exist_ok=True)
        for i in range(n):
            rel = f"{klass}/{klass}_{i:06d}.png"
            Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), MAGENTA).save(folder / rel)
            rows.append({"file": rel, "class": klass, "seed": i, "steps": 10, "guidance": 1.0,
                         "model_hash": "test", "split_hash": split_hash})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if label_fraction is not None:
        (folder / "manifest.json").write_text(json.dumps({"split_hash": split_hash, "label_fraction": label_fraction}))
    return folder / "manifest.csv"


def is_magenta(image: np.ndarray) -> bool:
    """Whether an (S, S, 3) or (3, S, S) uint8 image is the synthetic test colour."""
    pixels = image if image.shape[-1] == 3 else np.moveaxis(image, 0, -1)
    return bool((pixels.reshape(-1, 3) == np.array(MAGENTA)).all())
