"""The one frozen-feature loop: a loader or a uint8 image array in, (N, D) features out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dermkit.backbones import ImageArrayBatches, build_backbone, embed


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_features_and_labels_of_a_loader_in_order_and_training_mode_restored() -> None:
    net = small_net().train()
    images = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(images, torch.arange(10)), batch_size=4)  # 4 + 4 + 2
    features, labels = embed(net, loader, description="test")
    assert net.training  # restored
    with torch.no_grad():
        expected = net.eval()(images)  # eval mode: BatchNorm's running statistics, as embed uses
    assert features.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.allclose(features, expected, atol=1e-6) and labels.tolist() == list(range(10))


def test_no_gradients_are_recorded() -> None:
    features, _ = embed(small_net(), [(torch.randn(2, 3, 8, 8), torch.zeros(2))])
    assert not features.requires_grad


def test_no_images_give_an_empty_matrix_of_the_feature_width() -> None:
    backbone = build_backbone("tiny_cnn", small_stem=True, image_size=16)
    empty = ImageArrayBatches(np.zeros((0, 16, 16, 3), np.uint8), (0.5,) * 3, (0.5,) * 3, input_size=16)
    features, labels = embed(backbone, empty)
    assert features.shape == (0, backbone.feature_dim) and labels.shape == (0,)


def test_array_batches_scale_resize_and_normalise() -> None:
    images = np.full((5, 8, 8, 3), 51, np.uint8)  # 51 / 255 = 0.2 everywhere
    batches = ImageArrayBatches(images, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.25), input_size=16, batch_size=2)
    got = list(batches)
    assert len(batches) == len(got) == 3 and [len(x) for x, _ in got] == [2, 2, 1]
    x, labels = got[0]
    assert x.shape == (2, 3, 16, 16) and labels.tolist() == [-1, -1]
    for channel, value in enumerate(((0.2 - 0.1) / 0.5, 0.0, (0.2 - 0.3) / 0.25)):
        assert torch.allclose(x[:, channel], torch.full((2, 16, 16), value), atol=1e-5)


def test_array_features_equal_the_backbone_on_the_prepared_images() -> None:
    backbone = build_backbone("tiny_cnn", small_stem=True, image_size=16)
    images = np.random.default_rng(0).integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    mean, std = (0.6, 0.5, 0.4), (0.2, 0.25, 0.3)
    features, _ = embed(backbone, ImageArrayBatches(images, mean, std, input_size=16, batch_size=3))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=16, mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = backbone.eval()(x)
    assert features.shape == (7, backbone.feature_dim)
    assert torch.allclose(features, expected, atol=1e-5)


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ImageArrayBatches(np.zeros((1, 8, 8, 3), np.uint8), (0.5,) * 3, (0.5,) * 3, 8, batch_size=0)
