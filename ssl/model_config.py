"""Build the backbone of the ``model`` section (:class:`dermkit.config.BackboneConfig`) that
``ssl.pretrain`` and ``ssl.evaluate`` share, with the optional local weights it starts from."""

from __future__ import annotations

from dermkit.backbones import Backbone, build_backbone, load_init_weights
from dermkit.config import BackboneConfig
from dermkit.console import console


def build_model_backbone(model: BackboneConfig, image_size: int) -> Backbone:
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
