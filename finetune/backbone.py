"""Where the classifier's backbone comes from: an ``ssl`` backbone card, a weights file, or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dermkit.backbones import Backbone, build_backbone, load_backbone, load_init_weights
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD, card_path
from dermkit.console import console
from dermkit.errors import DermkitError
from dermkit.image_size import model_image_size
from finetune.config import ClassifierModelConfig


@dataclass
class BackboneSpec:
    """How the backbone was built and how its inputs are normalised.

    Attributes:
        architecture: registry name.
        small_stem: small-image stem.
        image_size: input side S (the card's input size for an ``ssl`` backbone).
        mean: normalisation mean (the card's, else ImageNet's).
        std: normalisation standard deviation.
        init: ``random`` or the weights file.
        pretrained: whether the weights are pretrained (enables the head-only phase).
        card: the ``ssl`` card's method, epochs and split hash, when there is one.
    """

    architecture: str
    small_stem: bool
    image_size: int
    mean: list[float]
    std: list[float]
    init: str = "random"
    pretrained: bool = False
    card: dict[str, object] = field(default_factory=dict)


def resolve_backbone(cfg: ClassifierModelConfig, image_size: int) -> tuple[Backbone, BackboneSpec]:
    """Build the backbone ``model.init`` asks for.

    Args:
        cfg: the ``model`` section.
        image_size: ``data.image_size`` (replaced by the card's input size for an ``ssl`` backbone:
            :func:`dermkit.image_size.model_image_size`).

    Raises:
        DermkitError: a missing or unfitting weights file.
    """
    if not cfg.init:
        backbone = build_backbone(cfg.backbone, cfg.small_stem, image_size)
        return backbone, BackboneSpec(cfg.backbone, cfg.small_stem, image_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    path = Path(cfg.init).expanduser()
    if not path.is_file():
        raise DermkitError(f"model.init={path} does not exist. Pass a backbone.safetensors from python -m ssl.pretrain, "
                           "a local weights file, or leave it empty for random initialisation.")
    if card_path(path).is_file():
        backbone, card = load_backbone(path)
        size = model_image_size(image_size, card.input_size, f"the backbone card {card_path(path)}")
        info = {"method": card.method, "epochs": card.epochs, "split_hash": card.split_hash, "data": card.data}
        return backbone, BackboneSpec(card.architecture, card.small_stem, size, list(card.mean),
                                      list(card.std), str(path), card.method != "random", info)
    backbone = build_backbone(cfg.backbone, cfg.small_stem, image_size)
    missing, unexpected = load_init_weights(backbone, path)
    console.print(f"Loaded {path} into {cfg.backbone}: {len(missing)} backbone tensor(s) left random, "
                  f"{len(unexpected)} file tensor(s) unused.")
    return backbone, BackboneSpec(cfg.backbone, cfg.small_stem, image_size, list(IMAGENET_MEAN), list(IMAGENET_STD),
                                  str(path), True)
