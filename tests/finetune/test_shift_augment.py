"""Acquisition-shift augmentation (``augment.zoom_out``, ``augment.vignette``) on both paths."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dermkit.augment import vignette
from finetune.config import FinetuneAugmentConfig
from finetune.device_transforms import train_device_augment
from finetune.train import main
from finetune.transforms import train_transform

SIZE = 32
PLAIN = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # mean, std: the views stay in [0, 1]


def centred_square() -> torch.Tensor:
    """(3, S, S) uint8: a white square of half the side on black, touching no edge."""
    image = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    image[:, SIZE // 4: 3 * SIZE // 4, SIZE // 4: 3 * SIZE // 4] = 255
    return image


def bright_share(views: torch.Tensor) -> torch.Tensor:
    """(B,) share of pixels above half brightness in (B, 3, S, S) views in [0, 1]."""
    return (views.mean(1) > 0.5).float().mean((1, 2))


def test_zoom_out_shrinks_the_image_alike_on_both_paths() -> None:
    # A square of a quarter of the area shrinks to 0.25 / z^2 with z uniform in [1, 1.5]: mean 1/6.
    # Up to 1.5 the mirrored border reflects only the black margin, not the square.
    augment = FinetuneAugmentConfig(jitter=0.0, zoom_out=1.5)
    torch.manual_seed(0)
    workers = train_transform(SIZE, *PLAIN, augment)
    pil = Image.fromarray(centred_square().permute(1, 2, 0).numpy())
    worker_share = bright_share(torch.stack([workers(pil) for _ in range(300)]))
    device_share = bright_share(train_device_augment(SIZE, *PLAIN, augment)(centred_square().expand(300, -1, -1, -1)))
    for share in (worker_share, device_share):
        assert share.max() <= 0.26 and share.min() >= 0.25 / 1.5 ** 2 - 0.02
        assert share.mean() == pytest.approx(1 / 6, abs=0.01)
    assert worker_share.std() == pytest.approx(device_share.std(), rel=0.25)


def test_vignette_darkens_the_corners_not_the_centre() -> None:
    torch.manual_seed(0)
    views = vignette(torch.ones(64, 3, SIZE, SIZE))
    assert torch.equal(views[:, :, SIZE // 2 - 2: SIZE // 2 + 2, SIZE // 2 - 2: SIZE // 2 + 2],
                       torch.ones(64, 3, 4, 4))
    corners = views[:, :, 0, 0]  # (64, 3)
    assert corners.max() <= 0.5 + 1e-6 and corners.min() >= -1e-6  # strength drawn from [0.5, 1]
    assert corners.std() > 0.05  # each view its own strength


@pytest.mark.parametrize("path", ["workers", "device"])
def test_vignette_probability_is_the_share_of_views_darkened(path: str) -> None:
    augment = FinetuneAugmentConfig(jitter=0.0, vignette=0.3)
    torch.manual_seed(1)
    white = torch.full((3, SIZE, SIZE), 255, dtype=torch.uint8)
    if path == "workers":
        transform = train_transform(SIZE, *PLAIN, augment)
        pil = Image.fromarray(white.permute(1, 2, 0).numpy())
        views = torch.stack([transform(pil) for _ in range(1000)])
    else:
        views = train_device_augment(SIZE, *PLAIN, augment)(white.expand(1000, -1, -1, -1))
    darkened = (views[:, :, 0, 0].mean(1) < 0.99).float().mean()
    assert darkened == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("setting", ["augment.zoom_out=0.5", "augment.zoom_out=4", "augment.vignette=1.5"])
def test_out_of_range_shift_augmentation_is_one_line(setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--backbone", "tiny_cnn", setting])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert setting.split("=")[0] in err and "Traceback" not in err
