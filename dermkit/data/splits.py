"""Lesion-grouped, class-stratified train/val/test splits and nested label fractions.

HAM10000 holds several images of one lesion; a split that puts a lesion on both sides inflates
every score. Here every group (the lesion, or the image where the lesion is unknown) lands on one
side, and each class's images are shared out in the requested proportions.

The split depends only on the records and the seed (NumPy's PCG64 generator, sorted inputs), so
the same seed gives the same split on any machine. Its content hash (of the CSV text) is what
later stages record to prove which split they used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermkit.csvfile import read_csv_rows
from dermkit.data.records import ImageRecord
from dermkit.errors import DermkitError

SPLITS: tuple[str, ...] = ("train", "val", "test")
FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
CSV_COLUMNS: tuple[str, ...] = ("image_id", "lesion_id", "label", "split", "min_fraction")


def lesion_grouped_split(records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
                         seed: int) -> list[str]:
    """Assign each record to ``train``/``val``/``test``, keeping each group on one side.

    Per class (a group's class is its most common label), groups are placed largest first (in random
    order within a size), each into the split furthest below its target image count relative to that
    target; the single-image groups that come last even the counts out, so each split ends within
    about one image of its target and holds its share of multi-image lesions.

    Returns:
        One split name per record, in the order of ``records``.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DermkitError(f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in "
                           "[0, 1) and sum to less than 1.")
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        members[rec.group].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for group in sorted(members):
        labels = [records[i].label or "" for i in members[group]]
        by_class[max(sorted(set(labels)), key=labels.count)].append(group)
    shares = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    assignment = [""] * len(records)
    for label in sorted(by_class):
        groups = by_class[label]
        order = rng.permutation(len(groups))
        # Largest groups first (stable within a size, in random order).
        groups = sorted((groups[j] for j in order), key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in groups)
        counts = dict.fromkeys(SPLITS, 0)
        for group in groups:
            size = len(members[group])
            # Relative shortfall, so large lesions are shared out in proportion instead of all
            # filling the largest split; the single images that come last even out the counts.
            split = max(SPLITS, key=lambda s: ((shares[s] * total - counts[s] - size / 2) / (shares[s] * total)
                                               if shares[s] > 0 else -math.inf))
            counts[split] += size
            for i in members[group]:
                assignment[i] = split
    return assignment


def nested_fractions(records: Sequence[ImageRecord], split: Sequence[str], seed: int,
                     fractions: Sequence[float] = FRACTIONS) -> list[float | None]:
    """The smallest label fraction of the training split whose subset holds each record.

    Within each class, training images are ranked in a seeded random order; the subset for
    fraction ``f`` is the first ``max(1, round(f * n_class))`` of them. Subsets are therefore nested
    (1% ⊂ 5% ⊂ ... ⊂ 100%), stratified, and hold at least one image of every class.

    Returns:
        One value per record: a fraction for training records, None for val/test.
    """
    rng = np.random.default_rng(seed + 1)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        if split[i] == "train":
            by_class[rec.label or ""].append(i)
    result: list[float | None] = [None] * len(records)
    for label in sorted(by_class):
        idx = by_class[label]
        order = [idx[j] for j in rng.permutation(len(idx))]
        for rank, i in enumerate(order):
            result[i] = next(f for f in sorted(fractions) if rank < max(1, round(f * len(idx))))
    return result


@dataclass
class SplitTable:
    """A split: per image its lesion, label, side and smallest label fraction, plus the seed."""

    image_ids: list[str]
    lesion_ids: list[str]
    labels: list[str]
    split: list[str]
    min_fraction: list[float | None]
    seed: int

    @classmethod
    def make(cls, records: Sequence[ImageRecord], val_fraction: float, test_fraction: float,
             seed: int) -> SplitTable:
        """Split labeled records by lesion and class, with nested label fractions of train."""
        split = lesion_grouped_split(records, val_fraction, test_fraction, seed)
        fractions = nested_fractions(records, split, seed)
        return cls([r.image_id for r in records], [r.lesion_id or "" for r in records],
                   [r.label or "" for r in records], split, fractions, seed)

    def to_csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in zip(self.image_ids, self.lesion_ids, self.labels, self.split, self.min_fraction):
            writer.writerow([*row[:4], "" if row[4] is None else f"{row[4]:g}"])
        return buffer.getvalue()

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the CSV text: equal hashes mean equal splits."""
        return hashlib.sha256(self.to_csv_text().encode()).hexdigest()[:16]

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``split.csv`` and ``split.json`` (seed, hash, counts) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out / "split.csv", out / "split.json"
        csv_path.write_text(self.to_csv_text())
        counts = {s: self.split.count(s) for s in SPLITS}
        json_path.write_text(json.dumps({"seed": self.seed, "hash": self.hash, "images": counts,
                                         "columns": list(CSV_COLUMNS)}, indent=2) + "\n")
        return csv_path, json_path

    @classmethod
    def load(cls, path: str | Path) -> SplitTable:
        """Read a ``split.csv`` (and the seed from ``split.json`` beside it, when present)."""
        path = Path(path)
        rows = read_csv_rows(path, CSV_COLUMNS, "Split file", "Write one with python -m dermkit.data --out DIR.")
        bad = sorted({r["split"] for r in rows} - set(SPLITS))
        if bad:
            raise DermkitError(f"Split file {path} has unknown split names {bad}; expected {list(SPLITS)}.")
        meta = path.with_name("split.json")
        seed = json.loads(meta.read_text()).get("seed", -1) if meta.is_file() else -1
        return cls([r["image_id"] for r in rows], [r["lesion_id"] for r in rows], [r["label"] for r in rows],
                   [r["split"] for r in rows],
                   [float(r["min_fraction"]) if r["min_fraction"] else None for r in rows], int(seed))

    def check_fraction(self, fraction: float) -> float:
        """Return ``fraction`` if it is one of the nested fractions, else raise naming them."""
        for f in FRACTIONS:
            if math.isclose(f, fraction):
                return f
        raise DermkitError(f"data.fraction={fraction} is not one of the nested label fractions "
                           f"{', '.join(f'{f:g}' for f in FRACTIONS)}.")
