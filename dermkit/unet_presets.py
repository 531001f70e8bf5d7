"""The generator's UNet size presets and the ``UNet2DModel`` keyword arguments they give.

Pure data and arithmetic, no diffusers import: ``synth.model`` builds the network from
:func:`unet_config`, and ``bench.grid.cost`` profiles the same network for its estimates without
importing the ``synth`` stage (stages and benchmarks share only this library and files). One
definition, so an estimate always describes the network the stage builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dermkit.errors import DermkitError, did_you_mean


@dataclass(frozen=True)
class UNetPreset:
    """A named UNet size.

    Attributes:
        image_size: the side in pixels the preset is meant for (``data.image_size`` default).
        block_out_channels: channels per resolution level (one down/up block each).
        layers_per_block: ResNet layers per block.
        attention_levels: indices of the levels that use self-attention blocks.
        norm_num_groups: GroupNorm groups (must divide every entry of ``block_out_channels``).
        note: where the preset is meant to run.
    """

    image_size: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    attention_levels: tuple[int, ...]
    norm_num_groups: int
    note: str


PRESETS: dict[str, UNetPreset] = {
    "tiny": UNetPreset(16, (8, 16), 1, (), 4, "tests: runs a step in milliseconds on CPU"),
    "small": UNetPreset(32, (32, 64, 64), 1, (2,), 16, "CPU, 32 px"),
    "base": UNetPreset(64, (64, 128, 256, 256), 2, (2, 3), 32, "GPU, 64 px"),
    "large": UNetPreset(128, (128, 128, 256, 256, 512), 2, (3, 4), 32, "GPU, 128 px"),
}


def get_preset(name: str) -> UNetPreset:
    """Look up a preset by name.

    Raises:
        DermkitError: unknown preset (the closest names and all names are listed).
    """
    if name not in PRESETS:
        raise DermkitError(f"Unknown UNet preset {name!r} (config key model.preset).{did_you_mean(name, PRESETS)} "
                           f"Presets: {', '.join(PRESETS)}.")
    return PRESETS[name]


def unet_config(preset: str, num_classes: int, image_size: int) -> dict[str, Any]:
    """The ``UNet2DModel`` keyword arguments of a preset for ``num_classes`` real classes.

    Args:
        preset: a name in :data:`PRESETS`.
        num_classes: real classes; one more embedding (index ``num_classes``) is the null class.
        image_size: side of the square images, divisible by ``2 ** (levels - 1)``.

    Raises:
        DermkitError: unknown preset, no classes, or an image size the UNet cannot halve enough.
    """
    spec = get_preset(preset)
    if num_classes < 1:
        raise DermkitError("A class-conditional generator needs labeled data with at least one class.")
    levels = len(spec.block_out_channels)
    if image_size % (2 ** (levels - 1)):
        raise DermkitError(f"Preset {preset!r} halves the image {levels - 1} times: data.image_size must be a "
                           f"multiple of {2 ** (levels - 1)}, got {image_size}.")
    down = tuple("AttnDownBlock2D" if i in spec.attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if i in spec.attention_levels else "UpBlock2D" for i in reversed(range(levels)))
    return {
        "sample_size": image_size,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": spec.block_out_channels,
        "layers_per_block": spec.layers_per_block,
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": spec.norm_num_groups,
        "num_class_embeds": num_classes + 1,  # + the null class of classifier-free guidance
    }
