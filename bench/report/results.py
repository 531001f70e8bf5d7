"""Reading the cells' outputs, and the tidy ``results.csv``.

Per cell, ``finetune.train`` writes (see ``finetune/outputs.py``):

- ``metrics.json``: test-set metrics, with ``balanced_accuracy``, ``accuracy`` and ``per_class``
  ``{class: {recall, precision, f1, auroc, support, ...}}`` (``auroc``: one-vs-rest, torchmetrics);
- ``predictions.csv``: ``image_id, true, predicted, prob_<class>...``, one row per test image.

``results.csv`` has one row per cell and class (:data:`RESULT_COLUMNS`); a cell's balanced accuracy
and accuracy repeat on each of its rows, so the file needs no join to plot. A ``results.csv`` written
before the ``auroc`` column reads back with AUROC undefined (NaN).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermkit.csvfile import read_csv_rows
from dermkit.errors import DermkitError
from bench.grid.keys import Cell

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
PROBABILITY_PREFIX = "prob_"
RESULT_COLUMNS: tuple[str, ...] = ("cell_id", "fraction", "init", "synthetic", "arm", "seed", "class", "recall",
                                   "precision", "f1", "auroc", "support", "balanced_accuracy", "accuracy")
# A results.csv written before the arms (grid.arms) has no ``arm`` column; it is derived from ``synthetic``.
# One written before per-class AUROC has no ``auroc`` column; it reads back as NaN.
OPTIONAL_COLUMNS: tuple[str, ...] = ("arm", "auroc")


@dataclass(frozen=True)
class Predictions:
    """One cell's test predictions.

    Attributes:
        image_ids: (N,) image ids, sorted.
        true: (N,) true class names.
        correct: (N,) bool, prediction equals the true class.
        classes: the classes with a ``prob_<class>`` column, in column order (empty: none written).
        probabilities: (N, C) the predicted probability of each of ``classes``; None without them.
    """

    image_ids: np.ndarray
    true: np.ndarray
    correct: np.ndarray
    classes: tuple[str, ...] = ()
    probabilities: np.ndarray | None = None

    def scores(self, klass: str) -> np.ndarray | None:
        """(N,) the predicted probability of ``klass`` per image; None when the file has no such column."""
        if self.probabilities is None or klass not in self.classes:
            return None
        return self.probabilities[:, self.classes.index(klass)]


def read_metrics(cell_dir: Path) -> dict[str, Any]:
    """A cell's ``metrics.json``.

    Raises:
        DermkitError: missing or malformed file, or no ``balanced_accuracy`` / ``per_class``.
    """
    path = cell_dir / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DermkitError(f"Cannot read {path}: {err}. Re-run the benchmark to recompute this cell.") from None
    missing = [k for k in ("balanced_accuracy", "accuracy", "per_class") if k not in metrics]
    if missing:
        raise DermkitError(f"{path} lacks the key(s) {', '.join(missing)} (written by finetune.train).")
    return metrics


def read_predictions(cell_dir: Path) -> Predictions:
    """A cell's ``predictions.csv`` (columns ``image_id``, ``true``, ``predicted`` and, where written,
    ``prob_<class>``), sorted by image id.

    Raises:
        DermkitError: missing file or columns, or a probability that is not a number.
    """
    path = cell_dir / PREDICTIONS_FILE
    raw = read_csv_rows(path, ("image_id", "true", "predicted"), "Predictions file",
                        "Re-run the benchmark to recompute this cell (written by finetune.train).")
    raw.sort(key=lambda r: r["image_id"])
    ids = np.array([r["image_id"] for r in raw])
    true = np.array([r["true"] for r in raw])
    correct = true == np.array([r["predicted"] for r in raw])
    columns = [c for c in (raw[0] if raw else {}) if c.startswith(PROBABILITY_PREFIX)]
    if not columns:
        return Predictions(ids, true, correct)
    try:
        probabilities = np.array([[float(r[c]) for c in columns] for r in raw])  # (N, C)
    except ValueError as err:
        raise DermkitError(f"Predictions file {path} holds a probability that is not a number ({err}). Re-run the "
                           "benchmark to recompute this cell.") from None
    classes = tuple(c.removeprefix(PROBABILITY_PREFIX) for c in columns)
    return Predictions(ids, true, correct, classes, probabilities)


def result_rows(cell: Cell, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The tidy rows of one cell: one per class of its ``metrics.json``."""
    rows = []
    for klass, values in metrics["per_class"].items():
        rows.append({
            "cell_id": cell.cell_id, **cell.as_dict(), "class": klass,
            **{k: values.get(k) for k in ("recall", "precision", "f1", "auroc", "support")},
            "balanced_accuracy": metrics["balanced_accuracy"], "accuracy": metrics["accuracy"],
        })
    return rows


def write_results(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``results.csv`` (undefined values as empty cells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in RESULT_COLUMNS})
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read ``results.csv`` back with typed values (empty cells as NaN).

    Raises:
        DermkitError: the file is missing or lacks columns.
    """
    required = [c for c in RESULT_COLUMNS if c not in OPTIONAL_COLUMNS]
    raw = read_csv_rows(path, required, "Results file", "Run python -m bench.label_efficiency first.")

    def number(text: str) -> float:
        return float(text) if text != "" else float("nan")

    return [{
        "cell_id": r["cell_id"], "fraction": float(r["fraction"]), "init": r["init"],
        "synthetic": r["synthetic"] == "True",
        "arm": r.get("arm") or ("synth" if r["synthetic"] == "True" else "real"), "seed": int(r["seed"]),
        "class": r["class"],
        "recall": number(r["recall"]), "precision": number(r["precision"]), "f1": number(r["f1"]),
        "auroc": number(r.get("auroc") or ""),
        "support": int(number(r["support"])) if r["support"] else 0,
        "balanced_accuracy": number(r["balanced_accuracy"]), "accuracy": number(r["accuracy"]),
    } for r in raw]
