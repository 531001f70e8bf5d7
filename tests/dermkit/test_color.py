"""Shades of Gray colour constancy and its place in the image cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermkit.config import DataConfig
from dermkit.data.cache import cache_images, cache_key
from dermkit.data.color import shades_of_gray
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError


def _cast_image(seed: int = 0) -> np.ndarray:
    """A gray texture under a warm (red-yellow) light: channels scaled 1.0, 0.75, 0.45."""
    rng = np.random.default_rng(seed)
    gray = rng.uniform(60, 200, size=(24, 24, 1))
    return np.clip(gray * np.array([1.0, 0.75, 0.45]), 0, 255).astype(np.uint8)


def _p_norms(image: np.ndarray, p: int = 6) -> np.ndarray:
    return np.power(np.mean(np.power(image.astype(np.float64), p), axis=(0, 1)), 1 / p)


def test_shades_of_gray_equalises_the_channel_p_norms() -> None:
    image = _cast_image()
    before = _p_norms(image)
    assert before.max() / before.min() > 2  # the colour cast
    corrected = shades_of_gray(image)
    after = _p_norms(corrected)
    assert corrected.shape == image.shape and corrected.dtype == np.uint8
    assert after.max() / after.min() < 1.02
    # Only the cast is removed: the brightness pattern (a gray texture) is kept.
    assert np.corrcoef(corrected[..., 0].ravel(), corrected[..., 2].ravel())[0, 1] > 0.99


def test_the_cache_key_covers_colour_constancy(tmp_path: Path) -> None:
    paths = [tmp_path / "a.png"]
    Image.fromarray(_cast_image()).save(paths[0])
    assert cache_key(paths, 8, color_constancy="shades_of_gray") != cache_key(paths, 8)
    plain = cache_images(paths, 24, tmp_path / "cache")
    corrected = cache_images(paths, 24, tmp_path / "cache", color_constancy="shades_of_gray")
    assert plain.path != corrected.path
    assert np.array_equal(plain.open()[0], _cast_image())
    assert np.array_equal(corrected.open()[0], shades_of_gray(_cast_image()))
    with pytest.raises(DermkitError, match="data.color_constancy='grey'.*shades_of_gray"):
        cache_images(paths, 24, tmp_path / "cache", color_constancy="grey")


def test_prepare_data_applies_and_records_colour_constancy(tmp_path: Path) -> None:
    for i, klass in enumerate(("mel", "nv", "nv")):
        (tmp_path / "set" / klass).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_cast_image(seed=i)).save(tmp_path / "set" / klass / f"{i}.png")
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "set"), image_size=24, cache_dir=str(tmp_path / "cache"),
                     val_fraction=0.0, test_fraction=0.0, color_constancy="shades_of_gray")
    prepared = prepare_data(cfg)
    assert prepared.describe()["color_constancy"] == "shades_of_gray"
    for image in np.asarray(prepared.images):
        norms = _p_norms(image)
        assert norms.max() / norms.min() < 1.02
    cfg.color_constancy = "none"
    plain = prepare_data(cfg)
    assert plain.cache_path != prepared.cache_path and plain.describe()["color_constancy"] == "none"
    assert _p_norms(np.asarray(plain.images)[0]).max() / _p_norms(np.asarray(plain.images)[0]).min() > 2


def test_a_second_correction_leaves_a_corrected_image_as_it_is() -> None:
    once = shades_of_gray(_cast_image(seed=3))
    twice = shades_of_gray(once)
    assert np.abs(twice.astype(int) - once.astype(int)).max() <= 1
