"""Collapse signal of the pretraining monitor (its embedding loop is tested in tests/dermkit/test_embed.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dermkit.backbones import embed
from ssl.monitor import CollapseWarning, check_collapse


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

