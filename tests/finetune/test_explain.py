"""Grad-CAM overlays: the image's size, class-specific maps, picked examples, one grid per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermkit.errors import DermkitError
from finetune.explain import (CAM_METHODS, RowImages, cam_layer, class_activation_maps, normalise, overlay,
                              pick_examples, write_explanations)
from finetune.module import ClassifierModule

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def tiny_classifier(classes: list[str], image_size: int = 32, seed: int = 0) -> ClassifierModule:
    torch.manual_seed(seed)
    return ClassifierModule(classes=classes, architecture="tiny_cnn", small_stem=True, image_size=image_size,
                            mean=MEAN, std=STD).eval()


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_overlays_have_the_image_size_and_differ_between_classes(method: str) -> None:
    model = tiny_classifier(["mel", "nv", "bkl"])
    images = random_images(2, size=40)
    batch = normalise(images, MEAN, STD)
    maps_mel = class_activation_maps(model, batch, [0, 0], method)
    maps_nv = class_activation_maps(model, batch, [1, 1], method)
    assert maps_mel.shape == (2, 40, 40) and 0.0 <= maps_mel.min() and maps_mel.max() <= 1.0
    assert not np.allclose(maps_mel, maps_nv, atol=1e-3)  # each class has its own evidence
    drawn = overlay(images[0], maps_mel[0])
    assert drawn.shape == images[0].shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, images[0])


def test_pick_examples_takes_the_most_confident_of_each_group() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.7, 0.3]])
    targets = np.array([0, 0, 0, 0, 1, -1])  # row 5: a class the model does not know
    picked = pick_examples(probs, targets, 0, n=2)
    assert picked["true positives"] == [0, 1]
    assert picked["false negatives"] == [2, 3]  # predicted class 1 with 0.8, then 0.7
    assert picked["false positives"] == [4, 5]  # an unknown-class image predicted 0 is a false positive too
    assert pick_examples(probs, targets, 0, n=1)["true positives"] == [0]


def test_write_explanations_draws_one_grid_per_class(tmp_path: Path) -> None:
    classes = ["mel", "nv"]
    model = tiny_classifier(classes)
    cache = random_images(6)
    rows = np.array([5, 4, 3, 2, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.55, 0.45], [0.1, 0.9]])
    targets = np.array([0, 0, 1, 1, 0, 1])
    out = write_explanations(tmp_path, model, RowImages(cache, rows), probs, targets, classes, 2, MEAN, STD,
                             [f"img{i}" for i in range(6)])
    assert set(out) == {"mel", "nv"}
    assert out["mel"]["true positives"] == 2 and out["mel"]["false negatives"] == 1
    assert out["mel"]["false positives"] == 1
    for name in classes:
        with Image.open(tmp_path / f"cam_{name}.png") as grid:
            assert grid.size[0] > 300 and grid.size[1] > 200


def classifier(architecture: str, small_stem: bool, image_size: int) -> ClassifierModule:
    torch.manual_seed(0)
    return ClassifierModule(classes=["mel", "nv"], architecture=architecture, small_stem=small_stem,
                            image_size=image_size, mean=MEAN, std=STD).eval()


@pytest.mark.parametrize("architecture, small_stem, size, name, cells", [
    ("resnet18", False, 64, "layer2", 8),  # layer3 is 4 x 4, layer4 2 x 2 at 64 px
    ("resnet18", False, 224, "layer3", 14),  # layer4 is 7 x 7 < 8
    ("resnet18", True, 64, "layer4", 8),  # the small stem keeps 4x the resolution: the last stage will do
    ("tiny_cnn", True, 32, "8", 8),  # strides 1, 2, 2: the last ReLU
    ("tiny_cnn", False, 32, "5", 8),  # strides 2, 2, 2: the last ReLU would be 4 x 4
    ("tiny_cnn", False, 64, "8", 8),
])
def test_the_cam_layer_is_the_deepest_with_at_least_8x8_maps(architecture: str, small_stem: bool, size: int,
                                                             name: str, cells: int) -> None:
    model = classifier(architecture, small_stem, size).train()
    layer = cam_layer(model, size)
    assert (layer.name, layer.map_size, layer.input_size, layer.chosen_by) == (name, (cells, cells), size, "automatic")
    assert layer.module is dict(model.backbone.net.named_modules())[name]
    assert model.training  # the probe's forward pass leaves the model's mode as it was
    assert layer.record() == {"name": name, "map_size": [cells, cells], "input_size": size, "chosen_by": "automatic"}
    assert f"CAM layer {name}: {cells} x {cells} maps at {size} px input" in layer.describe()


def test_a_vit_without_8x8_tokens_takes_its_largest_maps() -> None:
    layer = cam_layer(classifier("vit_s16", False, 64), 64)  # 16-px patches: a 4 x 4 token grid in every block
    assert layer.name == "encoder.layers.encoder_layer_11.ln_1" and layer.map_size == (4, 4)
    assert layer.reshape is not None


def test_report_cam_layer_names_another_layer_and_a_wrong_name_is_refused() -> None:
    model = classifier("resnet18", False, 64)
    named = cam_layer(model, 64, "layer4.1")
    assert (named.name, named.map_size, named.chosen_by) == ("layer4.1", (2, 2), "report.cam_layer")
    assert "named by report.cam_layer" in named.describe()
    with pytest.raises(DermkitError, match=r"report.cam_layer='layer5'.*Did you mean: layer.*Candidates: layer1, "
                                           r"layer2, layer3, layer4"):
        cam_layer(model, 64, "layer5")
    with pytest.raises(DermkitError, match=r"report.cam_layer=fc: its output \(shape \(1, 512\)\) is not a spatial "):
        cam_layer(model, 64, "fc")  # the backbone's fc is an identity on (B, 512) features


def test_cams_use_the_chosen_layer() -> None:
    model = classifier("resnet18", False, 64)
    batch = normalise(random_images(2, size=64), MEAN, STD)
    auto = class_activation_maps(model, batch, [0, 1])  # layer2: 8 x 8 cells
    named = class_activation_maps(model, batch, [0, 1], layer=cam_layer(model, 64, "layer2"))
    last = class_activation_maps(model, batch, [0, 1], layer=cam_layer(model, 64, "layer4"))  # 2 x 2 cells
    np.testing.assert_allclose(auto, named, atol=1e-6)
    assert not np.allclose(auto, last, atol=1e-2)
