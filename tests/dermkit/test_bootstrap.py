"""Bootstrap intervals: they agree with the report's point values and cover known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermkit.bootstrap import binary_auroc, bootstrap_intervals, point_metrics
from dermkit.errors import DermkitError
from dermkit.metrics import classification_report

CLASSES = ("a", "b", "c")


def _constructed(n_per_class: int = 200, recall: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three balanced classes with exactly ``recall`` of each class's images predicted right."""
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(3), n_per_class)
    right = np.tile(np.arange(n_per_class) < round(recall * n_per_class), 3)
    preds = np.where(right, targets, (targets + rng.integers(1, 3, targets.size)) % 3)
    probs = np.full((targets.size, 3), 0.1)
    probs[np.arange(targets.size), preds] = 0.8
    probs += rng.random(probs.shape) * 0.05  # distinct scores for the AUROC
    return probs / probs.sum(axis=1, keepdims=True), targets


def test_point_metrics_match_the_classification_report() -> None:
    probs, targets = _constructed()
    ours = point_metrics(probs, targets, 3)
    report = classification_report(torch.from_numpy(probs).float(), torch.from_numpy(targets), CLASSES)
    assert ours["balanced_accuracy"] == pytest.approx(report["balanced_accuracy"], abs=1e-6)
    for c, name in enumerate(CLASSES):
        for metric in ("recall", "specificity", "auroc"):
            assert ours[metric][c] == pytest.approx(report["per_class"][name][metric], abs=1e-4)


def test_binary_auroc_counts_ties_half() -> None:
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    positive = np.array([False, False, True, True])
    assert binary_auroc(scores, positive) == pytest.approx((1 + 0.5 + 2) / 4)
    assert np.isnan(binary_auroc(scores, np.zeros(4, dtype=bool)))


def test_intervals_cover_the_true_recall_and_contain_the_estimate() -> None:
    # Built with a recall of exactly 0.8 per class: the 95% interval of every class covers it.
    probs, targets = _constructed(recall=0.8)
    intervals = bootstrap_intervals(probs, targets, CLASSES, replicates=400, seed=1)
    estimate = point_metrics(probs, targets, 3)
    low, high = intervals["balanced_accuracy"]
    assert low < 0.8 < high and low <= estimate["balanced_accuracy"] <= high
    assert 0.02 < high - low < 0.15  # a real interval, neither a point nor everything
    for c, name in enumerate(CLASSES):
        low, high = intervals["per_class"][name]["recall"]
        assert low < 0.8 < high and estimate["recall"][c] == pytest.approx(0.8)
        assert intervals["replicates_used"][name]["recall"] == 400


def test_intervals_are_seeded_and_an_exact_classifier_has_a_point_interval() -> None:
    probs, targets = _constructed(recall=1.0)
    first = bootstrap_intervals(probs, targets, CLASSES, replicates=50, seed=3)
    assert first == bootstrap_intervals(probs, targets, CLASSES, replicates=50, seed=3)
    assert first["balanced_accuracy"] == [1.0, 1.0]
    assert first["per_class"]["a"]["auroc"] == [1.0, 1.0]


def test_a_class_without_images_has_no_interval() -> None:
    probs, targets = _constructed()
    keep = targets != 2
    intervals = bootstrap_intervals(probs[keep], targets[keep], CLASSES, replicates=20)
    assert intervals["per_class"]["c"]["recall"] is None and intervals["per_class"]["c"]["auroc"] is None
    with pytest.raises(DermkitError, match="at least 2 replicates"):
        bootstrap_intervals(probs, targets, CLASSES, replicates=1)
