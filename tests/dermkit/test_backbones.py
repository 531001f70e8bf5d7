"""One parametrised test over every backbone in the registry, plus the backbone file and card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from dermkit.backbones import BACKBONES, BackboneCard, build_backbone, load_backbone, load_init_weights, save_backbone
from dermkit.backbones.card import read_card
from dermkit.errors import DermkitError


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("small_stem", [False, True])
def test_every_backbone_builds_and_round_trips(name: str, small_stem: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    size = 32
    backbone = build_backbone(name, small_stem=small_stem, image_size=size).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        features = backbone(x)
    assert features.shape == (2, backbone.feature_dim)
    assert torch.isfinite(features).all()

    path = save_backbone(tmp_path / "backbone.safetensors", backbone,
                         BackboneCard(architecture=name, input_size=size, small_stem=small_stem, method="test"))
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"] == name and card["feature_dim"] == backbone.feature_dim
    loaded, loaded_card = load_backbone(path)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), features)
    assert loaded_card.method == "test" and loaded_card.small_stem == small_stem


def test_small_stem_keeps_more_resolution() -> None:
    plain, small = build_backbone("resnet18"), build_backbone("resnet18", small_stem=True)
    assert plain.net.conv1.stride == (2, 2) and small.net.conv1.stride == (1, 1)
    assert isinstance(small.net.maxpool, torch.nn.Identity)


def test_unknown_backbone_names_closest() -> None:
    with pytest.raises(DermkitError, match="resnet18"):
        build_backbone("resnet-18")


def test_local_imagenet_style_weights_load_and_report_keys(tmp_path: Path) -> None:
    # A torchvision-format file (as a user would download it): fc.* is unused, the rest loads.
    reference = resnet18(weights=None)
    weights = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), weights)
    backbone = build_backbone("resnet18")
    missing, unexpected = load_init_weights(backbone, weights)
    assert missing == [] and unexpected == ["fc.bias", "fc.weight"]
    assert torch.equal(backbone.net.conv1.weight, reference.conv1.weight)

    small = build_backbone("resnet18", small_stem=True)
    missing, _ = load_init_weights(small, weights)
    assert missing == ["conv1.weight"]  # 3x3 stem cannot take the 7x7 kernel


def test_weights_errors_are_clear(tmp_path: Path) -> None:
    backbone = build_backbone("tiny_cnn")
    with pytest.raises(DermkitError, match="does not exist"):
        load_init_weights(backbone, tmp_path / "none.pth")
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(DermkitError, match="No tensor"):
        load_init_weights(backbone, tmp_path / "r18.pth")
    with pytest.raises(DermkitError, match="card"):
        read_card(tmp_path / "nothing.safetensors")
