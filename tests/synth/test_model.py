"""The UNet presets: one parametrised test over the registry."""

from __future__ import annotations

import pytest
import torch

from dermkit.errors import DermkitError
from synth.model import PRESETS, build_unet, null_class, unet_config

HEAVY = {"base", "large"}


@pytest.mark.parametrize("name", [pytest.param(p, marks=pytest.mark.slow) if p in HEAVY else p for p in PRESETS])
def test_preset_predicts_noise_of_input_shape(name: str) -> None:
    size = PRESETS[name].image_size
    unet = build_unet(name, num_classes=3, image_size=size).eval()
    assert null_class(unet) == 3
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        eps = unet(x, torch.tensor([10, 500]), class_labels=torch.tensor([0, 3])).sample
    assert eps.shape == x.shape


def test_unknown_preset_and_bad_size_are_errors() -> None:
    with pytest.raises(DermkitError, match="Did you mean: small"):
        unet_config("smal", 3, 32)
    with pytest.raises(DermkitError, match="multiple of 4"):
        unet_config("small", 3, 30)
