"""predictions.csv keeps the ranking a confident model's probabilities carry (finetune.outputs)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_auroc

from finetune.outputs import write_predictions


def test_predictions_csv_round_trips_float32_probabilities_and_their_auroc(tmp_path: Path) -> None:
    # A saturated head: the other classes' probabilities are far below 1e-6, but still ordered.
    logits = torch.tensor([[30.0, 0.0, -5.0], [30.0, -5.0, 0.0], [0.0, 30.0, -9.0], [-9.0, 0.0, 30.0],
                           [30.0, -2.0, -1.0], [-1.0, -7.0, 30.0]])
    probs = logits.softmax(dim=1)  # (6, 3) float32
    labels = torch.tensor([0, 1, 1, 2, 0, 2])
    classes = ["a", "b", "c"]
    path = tmp_path / "predictions.csv"
    write_predictions(path, [f"img{i}" for i in range(6)], [classes[i] for i in labels], probs, classes)
    rows = list(csv.DictReader(path.open()))
    read = torch.tensor([[float(r[f"prob_{c}"]) for c in classes] for r in rows], dtype=torch.float32)
    assert torch.equal(read, probs)  # exact: 9 significant digits round-trip a float32
    assert 0.0 < float(rows[0]["prob_c"]) < 1e-6  # fixed 6 decimals would have written 0.000000
    per_class = dict(average=None, num_classes=3)
    assert torch.equal(multiclass_auroc(read, labels, **per_class), multiclass_auroc(probs, labels, **per_class))
