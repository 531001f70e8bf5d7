"""Bootstrap 95% intervals of classification metrics, resampling images.

Each replicate draws N images with replacement from the N scored images (seeded) and recomputes
balanced accuracy and, per class, recall, specificity and one-vs-rest AUROC; the interval is the
2.5th and 97.5th percentile of the replicates (the percentile bootstrap, Efron & Tibshirani 1993).
A replicate in which a class has no positive (or no negative) image has no value for it and is
left out of that class's percentiles; ``replicates_used`` says how many counted.

The metrics are computed with numpy here rather than with torchmetrics per replicate: a thousand
replicates of a few thousand images take about a second this way. They agree with
:func:`dermkit.metrics.classification_report` (argmax predictions, AUROC with ties counted half),
which the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dermkit.errors import DermkitError


def binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties count one half).

    Args:
        scores: (N,) score of each image; higher means more likely positive.
        positive: (N,) bool.

    Returns:
        The AUROC, NaN when there is no positive or no negative image.
    """
    pos, neg = scores[positive], np.sort(scores[~positive])
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")  # negatives scored lower than each positive
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * tied).sum() / (pos.size * neg.size))


def point_metrics(probs: np.ndarray, targets: np.ndarray, num_classes: int) -> dict[str, np.ndarray | float]:
    """Balanced accuracy and per-class recall, specificity and AUROC of one set of images.

    Args:
        probs: (N, C) class probabilities.
        targets: (N,) true class indices in ``[0, C)``.
        num_classes: C.

    Returns:
        ``balanced_accuracy`` (mean recall over the classes present) and (C,) arrays ``recall``,
        ``specificity``, ``auroc``; NaN where undefined.
    """
    preds = probs.argmax(axis=1)  # (N,)
    confusion = np.bincount(targets * num_classes + preds, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)  # (C, C), rows = true
    support = confusion.sum(axis=1)  # (C,)
    predicted = confusion.sum(axis=0)  # (C,)
    hits = np.diag(confusion)
    negatives = targets.size - support
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        specificity = np.where(negatives > 0, (negatives - (predicted - hits)) / negatives, np.nan)
    auroc = np.array([binary_auroc(probs[:, c], targets == c) for c in range(num_classes)])
    present = support > 0
    balanced = float(recall[present].mean()) if present.any() else float("nan")
    return {"balanced_accuracy": balanced, "recall": recall, "specificity": specificity, "auroc": auroc}


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], replicates: int = 1000,
                        seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile-bootstrap intervals of balanced accuracy and per-class recall, specificity, AUROC.

    Args:
        probs: (N, C) class probabilities, C = ``len(classes)``.
        targets: (N,) true class indices in ``[0, C)``.
        classes: class names.
        replicates: bootstrap replicates (resamples of the N images).
        seed: seed of the resampling (the same seed gives the same intervals).
        level: coverage of the interval (0.95: the 2.5th to 97.5th percentile).

    Returns:
        JSON-ready ``{"replicates", "seed", "level", "balanced_accuracy": [low, high],
        "per_class": {class: {"recall": [low, high] | None, "specificity": ..., "auroc": ...}},
        "replicates_used": {class: {metric: n}}}``.

    Raises:
        DermkitError: fewer than 2 replicates, a level outside (0, 1), or no images.
    """
    if replicates < 2:
        raise DermkitError(f"report.bootstrap={replicates}: the bootstrap needs at least 2 replicates (1000 is usual).")
    if not 0 < level < 1:
        raise DermkitError(f"Bootstrap level {level} must lie in (0, 1).")
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        raise DermkitError("No scored images to bootstrap.")
    num_classes = len(classes)
    rng = np.random.default_rng(seed)
    balanced = np.empty(replicates)
    per_metric = {m: np.empty((replicates, num_classes)) for m in ("recall", "specificity", "auroc")}
    for r in range(replicates):
        draw = rng.integers(0, targets.size, size=targets.size)  # (N,) resampled image indices
        values = point_metrics(probs[draw], targets[draw], num_classes)
        balanced[r] = values["balanced_accuracy"]
        for metric, table in per_metric.items():
            table[r] = values[metric]
    return {
        "replicates": int(replicates),
        "seed": int(seed),
        "level": float(level),
        "balanced_accuracy": _interval(balanced, level),
        "per_class": {name: {m: _interval(table[:, c], level) for m, table in per_metric.items()}
                      for c, name in enumerate(classes)},
        "replicates_used": {name: {m: int((~np.isnan(table[:, c])).sum()) for m, table in per_metric.items()}
                            for c, name in enumerate(classes)},
    }
