"""Metric values against hand-computed toy predictions."""

from __future__ import annotations

import pytest
import torch

from dermkit.metrics import (
    PredictionStore,
    accuracy,
    balanced_accuracy,
    classification_report,
    expected_calibration_error,
    per_class_auroc,
    recall_by_class,
)

CLASSES = ["a", "b", "c"]
# 10 images: true a a a a b b b c c c ; predicted a a a b b b c c c a
TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def _probs(preds: torch.Tensor, confidence: float = 0.8) -> torch.Tensor:
    """(N, 3) probabilities with ``confidence`` on the predicted class, the rest split evenly."""
    probs = torch.full((len(preds), 3), (1 - confidence) / 2)
    probs[torch.arange(len(preds)), preds] = confidence
    return probs


def test_report_against_hand_computed_values() -> None:
    report = classification_report(_probs(PREDS), TARGETS, CLASSES)
    # confusion (rows true): a: [3,1,0]  b: [0,2,1]  c: [1,0,2]
    assert report["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    recall = {"a": 3 / 4, "b": 2 / 3, "c": 2 / 3}
    precision = {"a": 3 / 4, "b": 2 / 3, "c": 2 / 3}  # columns: a 3/4, b 2/3, c 2/3
    specificity = {"a": 5 / 6, "b": 6 / 7, "c": 6 / 7}  # TN / (TN + FP)
    for name in CLASSES:
        row = report["per_class"][name]
        assert row["recall"] == pytest.approx(recall[name])
        assert row["precision"] == pytest.approx(precision[name])
        assert row["f1"] == pytest.approx(2 * recall[name] * precision[name] / (recall[name] + precision[name]))
        assert row["specificity"] == pytest.approx(specificity[name])
    assert report["per_class"]["a"]["support"] == 4
    assert report["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert report["accuracy"] == pytest.approx(7 / 10)
    assert report["macro_f1"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    # every prediction has confidence 0.8; 7 of 10 are right: ECE = |0.8 - 0.7|
    assert report["ece"] == pytest.approx(0.1, abs=1e-6)
    assert report["num_images"] == 10 and report["classes"] == CLASSES


def test_auroc_per_class_by_hand() -> None:
    # class a scores: positives (true a) 0.9 0.8 0.3 ; negatives 0.7 0.2 0.1
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    score_a = torch.tensor([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    probs = torch.stack([score_a, 1 - score_a], dim=1)
    auroc = per_class_auroc(probs, targets)
    # pairs (pos > neg): 0.9 beats 3, 0.8 beats 3, 0.3 beats 2 -> 8/9
    assert auroc[0].item() == pytest.approx(8 / 9)
    assert auroc[1].item() == pytest.approx(8 / 9)


def test_absent_class_is_undefined_not_zero() -> None:
    targets = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 2, 1, 1])  # class c never true, predicted once
    report = classification_report(_probs(preds), targets, CLASSES)
    c = report["per_class"]["c"]
    assert c["support"] == 0 and c["recall"] is None and c["auroc"] is None and c["f1"] is None
    assert c["precision"] == 0.0
    assert report["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy(preds, targets, 3))


def test_legacy_helpers_agree_with_report() -> None:
    assert accuracy(PREDS, TARGETS, 3) == pytest.approx(0.7)
    assert recall_by_class(PREDS, TARGETS, CLASSES) == pytest.approx({"a": 0.75, "b": 2 / 3, "c": 2 / 3})


def test_ece_perfectly_calibrated_is_zero() -> None:
    # confidence 1.0 and always right
    assert expected_calibration_error(_probs(TARGETS, 1.0), TARGETS) == pytest.approx(0.0, abs=1e-6)


def test_report_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="probs"):
        classification_report(torch.ones(4, 2), torch.zeros(4, dtype=torch.long), CLASSES)
    with pytest.raises(ValueError, match="targets"):
        classification_report(torch.ones(4, 3) / 3, torch.tensor([0, 1, 2, 3]), CLASSES)


def test_prediction_store_sorts_and_removes_duplicates() -> None:
    store = PredictionStore()
    store.update(torch.tensor([5, 1]), torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 0]))
    store.update(torch.tensor([3, 5]), torch.tensor([[0.6, 0.4], [0.1, 0.9]]), torch.tensor([0, 1]))  # 5 repeated (DDP padding)
    index, probs, target = store.compute()
    assert index.tolist() == [1, 3, 5]
    assert target.tolist() == [0, 0, 1]
    assert torch.allclose(probs[:, 0], torch.tensor([0.8, 0.6, 0.1]))
