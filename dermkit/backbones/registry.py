"""One registry of feature extractors: ``build_backbone(name)`` maps (B, 3, H, W) to (B, D).

Every backbone is built with random weights; pretrained weights come only from a local file
(:func:`dermkit.backbones.card.load_init_weights`), never from a hub.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.vision_transformer import VisionTransformer

from dermkit.errors import DermkitError
from dermkit.registry import Registry


class Backbone(nn.Module):
    """A feature extractor with its output width and how it was built.

    Attributes:
        net: the wrapped network, mapping (B, 3, H, W) to (B, feature_dim).
        feature_dim: D, the width of the features.
        name: registry name.
        small_stem: whether the small-image stem (for inputs of 64 px and less) is used.
        image_size: input side the network was built for (ViTs need it exactly).
    """

    def __init__(self, net: nn.Module, feature_dim: int, name: str, small_stem: bool, image_size: int) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        self.name = name
        self.small_stem = small_stem
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # (B, D)


BackboneFactory = Callable[[bool, int], Backbone]
# Factories ``(small_stem, image_size) -> Backbone``; ``--backbone`` help texts list these names.
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
register_backbone = BACKBONES.register  # decorator: ``@register_backbone("name")`` above a factory


def build_backbone(name: str, small_stem: bool = False, image_size: int = 64) -> Backbone:
    """Build a randomly initialised backbone by registry name.

    Args:
        name: one of :data:`BACKBONES` (``resnet18``, ``resnet50``, ``vit_s16``, ``tiny_cnn``).
        small_stem: ResNets: a 3x3 stride-1 first convolution and no max-pool, which keeps
            spatial detail for inputs of 64 px and less. ViT: 8-px patches instead of 16.
        image_size: input side; required exactly by ViTs, informative for the others.

    Raises:
        DermkitError: unknown name (the closest names are listed).
    """
    return BACKBONES.lookup(name)(small_stem, image_size)


def _resnet(net: nn.Module, feature_dim: int, name: str, small_stem: bool, image_size: int) -> Backbone:
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return Backbone(net, feature_dim, name, small_stem, image_size)


@register_backbone("resnet18")
def _resnet18(small_stem: bool, image_size: int) -> Backbone:
    return _resnet(resnet18(weights=None), 512, "resnet18", small_stem, image_size)


@register_backbone("resnet50")
def _resnet50(small_stem: bool, image_size: int) -> Backbone:
    return _resnet(resnet50(weights=None), 2048, "resnet50", small_stem, image_size)


@register_backbone("vit_s16")
def _vit_s16(small_stem: bool, image_size: int) -> Backbone:
    # ViT-S/16 (DeiT-S dimensions) from torchvision's ViT class; torchvision ships no ViT-S builder.
    patch = 8 if small_stem else 16
    if image_size % patch:
        raise DermkitError(f"vit_s16 needs an image size divisible by its patch size {patch}, got {image_size}.")
    net = VisionTransformer(image_size=image_size, patch_size=patch, num_layers=12, num_heads=6,
                            hidden_dim=384, mlp_dim=1536)
    net.heads = nn.Identity()
    return Backbone(net, 384, "vit_s16", small_stem, image_size)


@register_backbone("tiny_cnn")
def _tiny_cnn(small_stem: bool, image_size: int) -> Backbone:
    # For tests and fast CPU runs: three conv blocks, 32 features.
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=1 if small_stem else 2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
    )
    return Backbone(net, 32, "tiny_cnn", small_stem, image_size)
