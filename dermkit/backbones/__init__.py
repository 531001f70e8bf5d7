"""Backbones by name (one registry) and the backbone file + JSON card that stages exchange."""

from dermkit.backbones.registry import BACKBONES, Backbone, build_backbone, register_backbone
from dermkit.backbones.card import BackboneCard, load_backbone, load_init_weights, save_backbone

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneCard",
    "build_backbone",
    "load_backbone",
    "load_init_weights",
    "register_backbone",
    "save_backbone",
]
