"""The class-conditional denoising network: a diffusers ``UNet2DModel`` built from a size preset.

Conditioning follows classifier-free guidance (Ho & Salimans, 2022, "Classifier-Free Diffusion
Guidance"): the network has ``num_classes + 1`` class embeddings, the last one being the *null*
class that stands for "no label". Training drops labels to it with a small probability, so one
network predicts both the conditional and the unconditional noise.

The presets and the keyword arguments they give are defined in :mod:`dermkit.unet_presets`, where
the benchmarks' cost model reads them too; they are re-exported here, the stage's own name for them.
"""

from __future__ import annotations

from diffusers import UNet2DModel

from dermkit.errors import DermkitError
from dermkit.unet_presets import PRESETS, UNetPreset, get_preset, unet_config

__all__ = ["PRESETS", "UNetPreset", "build_unet", "get_preset", "null_class", "unet_config"]


def build_unet(preset: str, num_classes: int, image_size: int) -> UNet2DModel:
    """A randomly initialised class-conditional UNet mapping noisy (B, 3, S, S) images, timesteps
    (B,) and class labels (B,) in ``[0, num_classes]`` to predicted noise (B, 3, S, S).

    Args:
        preset: a name in :data:`dermkit.unet_presets.PRESETS`.
        num_classes: real classes; one more embedding is the null class.
        image_size: side of the square images.

    Raises:
        DermkitError: see :func:`dermkit.unet_presets.unet_config`.
    """
    return UNet2DModel(**unet_config(preset, num_classes, image_size))


def null_class(unet: UNet2DModel) -> int:
    """The index of the null ("no label") class embedding of a conditional UNet."""
    embeds = unet.config.num_class_embeds
    if not embeds:
        raise DermkitError("This UNet is not class-conditional (num_class_embeds is unset).")
    return int(embeds) - 1
