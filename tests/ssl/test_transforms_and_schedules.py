"""Augmentation views and the per-step schedules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dermkit.errors import DermkitError
from ssl.base_module import momentum_array, warmup_cosine_array
from ssl.dino_module import DINOConfig, local_crop_side, teacher_temp_array
from ssl.transforms import PretrainAugmentConfig, blur_probability, dino_transform, simclr_transform


def _image(size: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_simclr_views() -> None:
    views = simclr_transform(PretrainAugmentConfig(), 32)(_image())
    assert len(views) == 2 and all(v.shape == (3, 32, 32) for v in views)


def test_dino_views_global_then_local() -> None:
    views = dino_transform(PretrainAugmentConfig(), 32, 16, 3, 0.4, 0.05, 0.4)(_image())
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3


def test_blur_off_at_small_sizes() -> None:
    aug = PretrainAugmentConfig(blur_prob=0.5, blur_off_at=64)
    assert blur_probability(aug, 64) == 0.0 and blur_probability(aug, 32) == 0.0
    assert blur_probability(aug, 96) == 0.5


def test_bad_augment_value_names_key() -> None:
    with pytest.raises(DermkitError, match="augment.vflip_prob"):
        simclr_transform(PretrainAugmentConfig(vflip_prob=1.5), 32)


def test_local_crop_side() -> None:
    assert local_crop_side(DINOConfig(), 224) == 96
    assert local_crop_side(DINOConfig(), 64) == 24
    assert local_crop_side(DINOConfig(local_crop_size=24), 64) == 24


def test_momentum_schedule_rises_to_one() -> None:
    m = momentum_array(100, 0.99)
    assert m[0] == pytest.approx(0.99) and m[-1] == pytest.approx(1.0) and np.all(np.diff(m) >= 0)


def test_teacher_temperature_warms_up() -> None:
    cfg = DINOConfig(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=2)
    t = teacher_temp_array(50, 10, cfg)
    assert len(t) == 50 and t[0] == pytest.approx(0.04) and np.all(t[20:] == 0.07)
    assert np.all(np.diff(t[:20]) > 0)


def test_lr_warmup_then_cosine() -> None:
    lr = warmup_cosine_array(100, 1.0, 10, 0.0)
    assert len(lr) == 100 and lr[0] == 0.0 and int(np.argmax(lr)) == 10
    assert lr[-1] == pytest.approx(0.0) and np.all(np.diff(lr[10:]) <= 1e-12)
