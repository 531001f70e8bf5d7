"""What a run leaves in its folder: metrics, predictions, per-class table and figures.

File contract (read by ``bench``; keep names and keys stable):

- ``metrics.json``: :func:`dermkit.metrics.classification_report` keys (``balanced_accuracy``,
  ``accuracy``, ``macro_f1``, ``auroc_macro``, ``ece``, ``per_class``, ``classes``,
  ``confusion_matrix``, ...) plus the run's ``counts``, ``split_hash``, ``fraction``, ``seed``.
- ``predictions.csv``: ``image_id, true, predicted, prob_<class>...`` (one probability column per
  model class), one row per image, sorted by ``image_id``.
- ``per_class.csv``: one row per class with the per-class metrics and training counts.
- ``confusion_matrix.png`` (rows normalised to recall, counts written in the cells) and
  ``per_class_recall.png``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermkit.console import print_table
from dermkit.vocab import display_name

PER_CLASS_FIELDS = ("recall", "precision", "f1", "specificity", "auroc", "support")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (undefined numbers must already be None)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_predictions(path: Path, image_ids: Sequence[str], true: Sequence[str], probs: torch.Tensor,
                      classes: Sequence[str]) -> None:
    """``predictions.csv``: image id, true class name, predicted class, probabilities (N, C); sorted by image id.

    Probabilities are written with 9 significant digits, which round-trip a float32 exactly: a confident model
    puts many probabilities below 1e-6, and fixed decimals would turn them into ties at 0 and change the
    one-vs-rest AUROC that bench.compare_cells and the grid's report compute from this file.
    """
    predicted = probs.argmax(dim=1).tolist()
    order = sorted(range(len(image_ids)), key=lambda i: image_ids[i])
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image_id", "true", "predicted", *(f"prob_{c}" for c in classes)])
        for i in order:
            writer.writerow([image_ids[i], true[i], classes[predicted[i]], *(f"{p:.9g}" for p in probs[i].tolist())])


def write_per_class_csv(path: Path, report: dict[str, Any], counts: dict[str, dict[str, int]] | None) -> None:
    """``per_class.csv``: class, display name, the per-class metrics and the training counts."""
    count_cols = list(counts) if counts else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["class", "name", *PER_CLASS_FIELDS, *(f"train_{k}" for k in count_cols)])
        for name, row in report["per_class"].items():
            values = ["" if row[f] is None else row[f] for f in PER_CLASS_FIELDS]
            writer.writerow([name, display_name(name), *values, *(counts[k].get(name, 0) for k in count_cols)])


def plot_confusion_matrix(path: Path, confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> None:
    """Confusion matrix (rows = true class) coloured by row-normalised rate, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.int64)  # (C, C)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.7 * len(classes)))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_class_recall(path: Path, report: dict[str, Any], title: str) -> None:
    """Bar chart of per-class recall (support under each bar), balanced accuracy as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["per_class"])
    recall = [report["per_class"][c]["recall"] for c in names]
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(names), 3.2))
    ax.bar(range(len(names)), [np.nan if r is None else r for r in recall], color="tab:blue")
    if report["balanced_accuracy"] is not None:
        ax.axhline(report["balanced_accuracy"], color="tab:red", linestyle="--",
                   label=f"balanced accuracy {report['balanced_accuracy']:.3f}")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(range(len(names)), [f"{c}\nn={report['per_class'][c]['support']}" for c in names], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(value: float | int | None) -> float | int | str:
    return "-" if value is None else value


def print_report(report: dict[str, Any], counts: dict[str, dict[str, int]] | None, title: str) -> None:
    """The rich per-class table (with training counts when given) and the headline numbers."""
    count_cols = list(counts) if counts else []
    rows = []
    for name, row in report["per_class"].items():
        rows.append([name, *(_cell(row[f]) for f in PER_CLASS_FIELDS), *(counts[k].get(name, 0) for k in count_cols)])
    rows.append(["macro", _cell(report["balanced_accuracy"]), "-", _cell(report["macro_f1"]), "-",
                 _cell(report["auroc_macro"]), report["num_images"], *(sum(counts[k].values()) for k in count_cols)])
    headline = (f"{title}: balanced accuracy {report['balanced_accuracy']:.3f}, accuracy {report['accuracy']:.3f}, "
                f"ECE {report['ece']:.3f}" if report["balanced_accuracy"] is not None else title)
    print_table(headline, ["class", *PER_CLASS_FIELDS, *(f"train {k}" for k in count_cols)], rows)


def write_outputs(out_dir: Path, report: dict[str, Any], image_ids: Sequence[str], true: Sequence[str],
                  probs: torch.Tensor, extra: dict[str, Any], title: str) -> dict[str, Any]:
    """Write every output file of an evaluated classifier into ``out_dir`` and print the table.

    Args:
        out_dir: run folder.
        report: :func:`dermkit.metrics.classification_report` of the scored images.
        image_ids: (N,) id of every evaluated image.
        true: (N,) true class name of every image (may name classes the model does not know).
        probs: (N, C) predicted probabilities over ``report["classes"]``.
        extra: further ``metrics.json`` keys (``counts``, ``split_hash``, ``fraction``, ``seed``, ...).
        title: figure and table title.

    Returns:
        The dict written to ``metrics.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**report, **extra}
    write_json(out_dir / "metrics.json", metrics)
    write_predictions(out_dir / "predictions.csv", image_ids, true, probs, report["classes"])
    counts = extra.get("counts")
    write_per_class_csv(out_dir / "per_class.csv", report, counts)
    plot_confusion_matrix(out_dir / "confusion_matrix.png", report["confusion_matrix"], report["classes"], title)
    plot_per_class_recall(out_dir / "per_class_recall.png", report, title)
    print_report(report, counts, title)
    return metrics
