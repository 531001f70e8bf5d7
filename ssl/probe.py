"""Classifiers on frozen features: weighted kNN (lightly's ``knn_predict``) and a linear probe.

Both take (N, D) feature matrices and (N,) integer labels and return (M,) predicted class indices
for M query features; scoring is left to :mod:`dermkit.metrics`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking.knn import knn_predict
from torch import nn

from dermkit.errors import DermkitError


def _check(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor) -> None:
    if train_features.ndim != 2 or query_features.ndim != 2 or train_features.shape[1] != query_features.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {tuple(train_features.shape)} "
                         f"and {tuple(query_features.shape)}")
    if len(train_labels) != len(train_features):
        raise ValueError(f"{len(train_labels)} labels for {len(train_features)} features")
    if len(train_features) == 0:
        raise DermkitError("No labelled training images to fit a probe on: use a labelled dataset "
                           "(data.name=ham10000, ...) or a larger data.fraction.")


@torch.no_grad()
def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor,
                 num_classes: int, k: int = 20, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Similarity-weighted kNN on cosine similarity (Wu et al. 2018, as in lightly's benchmarks).

    Args:
        train_features: (N, D) bank features.
        train_labels: (N,) int64 labels of the bank.
        query_features: (M, D) features to classify.
        num_classes: C.
        k: neighbours (capped at N).
        temperature: similarity temperature.
        chunk: queries per matrix product (bounds memory at chunk x N).

    Returns:
        (M,) int64 predicted classes.
    """
    _check(train_features, train_labels, query_features)
    bank = F.normalize(train_features.float(), dim=1).t().contiguous()  # (D, N)
    labels = train_labels.long()
    preds = []
    for start in range(0, len(query_features), chunk):
        query = F.normalize(query_features[start:start + chunk].float(), dim=1)  # (m, D)
        ranked = knn_predict(query, bank, labels, num_classes, knn_k=min(k, bank.shape[1]), knn_t=temperature)
        preds.append(ranked[:, 0])  # (m,)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor,
                 num_classes: int, epochs: int = 100, lr: float = 0.01, weight_decay: float = 1e-4,
                 balanced: bool = True, seed: int = 0) -> torch.Tensor:
    """Logistic regression on standardised frozen features, full-batch AdamW.

    Args:
        train_features: (N, D).
        train_labels: (N,) int64.
        query_features: (M, D).
        num_classes: C.
        epochs: full-batch optimiser steps.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        balanced: weight the loss by inverse class frequency (targets balanced accuracy).
        seed: initialisation seed.

    Returns:
        (M,) int64 predicted classes.
    """
    _check(train_features, train_labels, query_features)
    x = train_features.float()
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std  # (N, D)
    y = train_labels.long()
    counts = torch.bincount(y, minlength=num_classes).float()
    weight = (counts.sum() / (num_classes * counts.clamp_min(1.0))) if balanced else None
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            F.cross_entropy(layer(x), y, weight=weight).backward()
            optimizer.step()
    with torch.no_grad():
        return layer((query_features.float() - mean) / std).argmax(1)  # (M,)
