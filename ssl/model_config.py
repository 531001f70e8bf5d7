"""Which backbone a command builds, and the optional local weights it starts from."""

from __future__ import annotations

from dataclasses import dataclass

from dermkit.backbones import Backbone, build_backbone, load_init_weights
from dermkit.console import console


@dataclass
class ModelConfig:
    """The backbone section shared by ``ssl.pretrain`` and ``ssl.evaluate``.

    Keys:
        backbone: registry name in :mod:`dermkit.backbones` (``resnet18``, ``resnet50``,
            ``vit_s16``, ``tiny_cnn``).
        small_stem: ResNets: 3x3 stride-1 first convolution without max-pool (for inputs of
            64 px and less); ViT: 8-px patches.
        init: a local weights file (e.g. torchvision ImageNet weights you downloaded) to start
            from; empty for random initialisation. Nothing is downloaded.
    """

    backbone: str = "resnet18"
    small_stem: bool = False
    init: str = ""


def build_model_backbone(model: ModelConfig, image_size: int) -> Backbone:
    """Build ``model.backbone`` and load ``model.init`` if set, reporting keys that did not load.

    Raises:
        DermkitError: unknown backbone name, or an init file that is missing or does not fit.
    """
    backbone = build_backbone(model.backbone, small_stem=bool(model.small_stem), image_size=image_size)
    if model.init:
        missing, unexpected = load_init_weights(backbone, model.init)
        console.print(f"model.init: loaded {model.init} into {model.backbone}; "
                      f"{len(missing)} missing keys, {len(unexpected)} unexpected keys.")
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                console.print(f"  [yellow]{label}:[/] {shown}", highlight=False)
    return backbone
