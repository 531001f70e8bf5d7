"""Backbones by name (one registry), the backbone file + JSON card that stages exchange, and frozen features."""

from dermkit.backbones.registry import BACKBONES, Backbone, build_backbone, register_backbone
from dermkit.backbones.card import BackboneCard, load_backbone, load_init_weights, save_backbone
from dermkit.backbones.embed import ImageArrayBatches, embed

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneCard",
    "ImageArrayBatches",
    "build_backbone",
    "embed",
    "load_backbone",
    "load_init_weights",
    "register_backbone",
    "save_backbone",
]
