"""Collapse signal and the kNN monitor."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl.monitor import CollapseWarning, check_collapse, embed


class ConstantBackbone(nn.Module):
    """Maps every image to the same (B, 8) feature: a fully collapsed network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 8)


def test_collapse_warning_fires_for_constant_backbone() -> None:
    loader = DataLoader(TensorDataset(torch.randn(32, 3, 16, 16), torch.zeros(32, dtype=torch.long)), batch_size=8)
    features, labels = embed(ConstantBackbone(), loader)
    assert features.shape == (32, 8) and labels.shape == (32,)
    with pytest.warns(CollapseWarning, match="collapsed"):
        assert check_collapse(features, ratio=0.05) < 1e-6


def test_no_collapse_warning_for_spread_features() -> None:
    features = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        std = check_collapse(features, ratio=0.05)
    assert std == pytest.approx(64 ** -0.5, rel=0.1)


def test_embed_restores_training_mode() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.train()
    loader = DataLoader(TensorDataset(torch.randn(6, 3, 8, 8), torch.arange(6)), batch_size=4)
    features, labels = embed(backbone, loader)
    assert features.shape == (6, 4) and labels.tolist() == list(range(6))
    assert backbone.training
