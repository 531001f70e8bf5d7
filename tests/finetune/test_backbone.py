"""Backbone initialisation: an ssl backbone card, a plain weights file, or random."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dermkit.backbones import BackboneCard, build_backbone, save_backbone
from dermkit.errors import DermkitError
from finetune.backbone import resolve_backbone
from finetune.config import ClassifierModelConfig


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_ssl_card_sets_architecture_size_and_normalisation(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = build_backbone("tiny_cnn", small_stem=True, image_size=16)
    card = BackboneCard("tiny_cnn", input_size=16, small_stem=True, mean=(0.6, 0.5, 0.4), std=(0.2, 0.2, 0.2),
                        method="simclr", epochs=3, split_hash="abc")
    path = save_backbone(tmp_path / "backbone.safetensors", source, card)
    # model.backbone / small_stem / image_size are overridden by the card
    backbone, spec = resolve_backbone(ClassifierModelConfig(backbone="resnet18", small_stem=False, init=str(path)), 64)
    assert spec.architecture == "tiny_cnn" and spec.small_stem and spec.image_size == 16
    note = "".join(capsys.readouterr().err.split())  # rich wraps long lines, even inside a path
    assert f"data.image_size=16fromthebackbonecard{tmp_path / 'backbone.json'}insteadof64" in note
    assert spec.mean == pytest.approx([0.6, 0.5, 0.4]) and spec.pretrained
    assert spec.card["method"] == "simclr" and spec.card["split_hash"] == "abc"
    assert _same_weights(backbone, source)


def test_plain_weights_file_and_random_init(tmp_path: Path) -> None:
    source = build_backbone("tiny_cnn", small_stem=False, image_size=32)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.net.state_dict().items()}}, path)
    backbone, spec = resolve_backbone(ClassifierModelConfig(backbone="tiny_cnn", init=str(path)), 32)
    assert spec.pretrained and spec.init == str(path) and _same_weights(backbone, source)
    random_backbone, random_spec = resolve_backbone(ClassifierModelConfig(backbone="tiny_cnn"), 32)
    assert not random_spec.pretrained and random_spec.init == "random"
    assert not _same_weights(random_backbone, source)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="model.init=.*does not exist"):
        resolve_backbone(ClassifierModelConfig(init=str(tmp_path / "nope.safetensors")), 32)
