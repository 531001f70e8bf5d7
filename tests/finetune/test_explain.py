"""Grad-CAM overlays: the image's size, class-specific maps, picked examples, one grid per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.explain import (CAM_METHODS, RowImages, class_activation_maps, normalise, overlay, pick_examples,
                              write_explanations)
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
