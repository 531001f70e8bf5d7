"""Classification metrics for imbalanced skin-lesion data, computed with torchmetrics.

Balanced accuracy (mean per-class recall, the ISIC 2018 challenge metric) is the headline number;
micro accuracy (what MedMNIST reports as ACC) is kept only for comparison with the literature.

:func:`classification_report` computes every number a fine-tuning run reports (the ``metrics.json``
contract read by ``bench``): balanced accuracy, accuracy, macro F1, macro AUROC, expected
calibration error, the confusion matrix and, per class, recall, precision, F1, specificity, AUROC
and support. Macro averages run over the classes present in the targets, the same classes
:func:`balanced_accuracy` averages over; a class absent from the targets has no recall, F1 or
AUROC (``None`` in the report) rather than a misleading 0.

:class:`PredictionStore` collects (index, probabilities, target) across batches and, under DDP,
across processes, so that validation and test metrics are computed once over the whole split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_specificity,
)

ECE_BINS = 15


def balanced_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``targets``.

    Args:
        preds: (N,) predicted class indices, or (N, C) scores.
        targets: (N,) true class indices.
        num_classes: C.
    """
    recall = per_class_recall(preds, targets, num_classes)
    present = torch.bincount(targets.long(), minlength=num_classes) > 0
    return float(recall[present].mean()) if present.any() else float("nan")


def per_class_recall(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) recall of each class (0 for classes absent from ``targets``)."""
    metric = MulticlassRecall(num_classes=num_classes, average="none")
    return metric(preds, targets.long())


def accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """Micro accuracy (share of correct predictions)."""
    return float(MulticlassAccuracy(num_classes=num_classes, average="micro")(preds, targets.long()))


def recall_by_class(preds: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> dict[str, float]:
    """Per-class recall keyed by class name."""
    recall = per_class_recall(preds, targets, len(classes))
    return {name: float(r) for name, r in zip(classes, recall)}


def _number(value: torch.Tensor | float) -> float | None:
    """A float for JSON, or None where the value is undefined (NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


def per_class_auroc(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(C,) one-vs-rest AUROC of each class; NaN where a class has no positive or no negative.

    Args:
        probs: (N, C) class probabilities.
        targets: (N,) true class indices.
    """
    num_classes = probs.shape[1]
    counts = torch.bincount(targets.long(), minlength=num_classes)
    defined = (counts > 0) & (counts < targets.numel())
    out = torch.full((num_classes,), float("nan"))
    if defined.any():
        # torchmetrics warns about and scores 0 for undefined classes; those are overwritten with NaN.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(positive|negative) samples in targets.*")
            auroc = multiclass_auroc(probs.float(), targets.long(), num_classes, average="none", validate_args=False)
        out[defined] = auroc.float().cpu()[defined]
    return out


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error (top-label confidence, ``n_bins`` equal-width bins, L1).

    Args:
        probs: (N, C) class probabilities.
        targets: (N,) true class indices.
        n_bins: number of confidence bins.
    """
    return float(multiclass_calibration_error(probs.float(), targets.long(), probs.shape[1], n_bins=n_bins, norm="l1"))


def _checked(probs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs`` (N, C) as float32 and ``targets`` (N,) as int64 on the CPU, after checking their shapes and range.

    Raises:
        ValueError: shapes do not match or a target is out of range.
    """
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs must be (N, {num_classes}), got {tuple(probs.shape)}")
    if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
        raise ValueError(f"targets must be ({probs.shape[0]},), got {tuple(targets.shape)}")
    probs, targets = probs.detach().float().cpu(), targets.detach().long().cpu()
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}), got {targets.min()}..{targets.max()}")
    return probs, targets


def classification_report(probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Every reported metric of a classifier on one labeled set.

    Args:
        probs: (N, C) class probabilities (rows sum to 1), C = ``len(classes)``.
        targets: (N,) true class indices in ``[0, C)``.
        classes: class names, index i = column i of ``probs``.

    Returns:
        A JSON-ready dict: ``balanced_accuracy``, ``accuracy``, ``macro_f1``, ``auroc_macro``,
        ``ece``, ``num_images``, ``classes``, ``confusion_matrix`` (C x C list, rows = true class,
        columns = predicted class) and ``per_class`` {class: {recall, precision, f1, specificity,
        auroc, support}}. Undefined values (a class absent from the targets) are None.

    Raises:
        ValueError: shapes do not match or a target is out of range.
    """
    probs, targets = _checked(probs, targets, len(classes))
    num_classes = len(classes)
    preds = probs.argmax(dim=1)  # (N,)
    support = torch.bincount(targets, minlength=num_classes)  # (C,)
    present = support > 0

    recall = per_class_recall(preds, targets, num_classes).float()
    precision = multiclass_precision(preds, targets, num_classes, average="none").float()
    f1 = multiclass_f1_score(preds, targets, num_classes, average="none").float()
    specificity = multiclass_specificity(preds, targets, num_classes, average="none").float()
    auroc = per_class_auroc(probs, targets)
    recall[~present] = float("nan")
    f1[~present] = float("nan")
    confusion = multiclass_confusion_matrix(preds, targets, num_classes)  # (C, C) rows = true

    def mean_present(values: torch.Tensor) -> float | None:
        kept = values[present & ~values.isnan()]
        return float(kept.mean()) if kept.numel() else None

    per_class = {
        name: {
            "recall": _number(recall[i]),
            "precision": _number(precision[i]),
            "f1": _number(f1[i]),
            "specificity": _number(specificity[i]),
            "auroc": _number(auroc[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "balanced_accuracy": mean_present(recall),
        "accuracy": _number(accuracy(preds, targets, num_classes)) if targets.numel() else None,
        "macro_f1": mean_present(f1),
        "auroc_macro": mean_present(auroc),
        "ece": _number(expected_calibration_error(probs, targets)) if targets.numel() else None,
        "num_images": int(targets.numel()),
        "classes": list(classes),
        "confusion_matrix": confusion.tolist(),
        "per_class": per_class,
    }


class PredictionStore(Metric):
    """Collects (index, probabilities, target) over batches and DDP processes.

    ``compute()`` returns the rows sorted by index with duplicates removed (a DistributedSampler
    pads the last batch by repeating samples), so metrics see every image exactly once and in a
    deterministic order.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, index: torch.Tensor, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: index (B,), probs (B, C), target (B,)."""
        self.index.append(index.detach().long())
        self.probs.append(probs.detach().float())
        self.target.append(target.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index (N,), probs (N, C), target (N,)), sorted by index, one row per index."""
        index = _cat(self.index).cpu()
        probs = _cat(self.probs).cpu()
        target = _cat(self.target).cpu()
        order = torch.argsort(index, stable=True)
        index, probs, target = index[order], probs[order], target[order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        return index[keep], probs[keep], target[keep]


def _cat(values: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    # After a DDP sync the state is already one tensor; before it, a list of batches.
    if isinstance(values, torch.Tensor):
        return values
    return torch.cat(values) if values else torch.empty(0)
