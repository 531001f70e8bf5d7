"""The device augmentation path draws from the same distributions as the per-image worker path.

Each test pushes many copies of one synthetic image through both paths on a fixed seed (lightly's
``SimCLRTransform`` / torchvision v2 on PIL images against :mod:`dermkit.augment` on a uint8
batch), measures one quantity per view that a single operation controls, and compares the two
samples: the two-sample Kolmogorov-Smirnov statistic (about 0.07 separates the paths at the 1%
level with 1000 views each; the tests allow 0.1), and the means and standard deviations, which
catch a changed strength or probability (e.g. brightness 0.5 for 0.4) that KS alone would pass.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dermkit.augment import MultiViewAugment, ViewAugment, ViewSpec, crop_boxes, seed_for_process
from finetune.config import FinetuneAugmentConfig as FinetuneAugment
from finetune.device_transforms import train_device_augment
from finetune.transforms import train_transform
from ssl.device_transforms import dino_device_views, simclr_device_views
from ssl.transforms import PretrainAugmentConfig, simclr_transform

SIZE = 32
N_IMAGES = 500  # x 2 SimCLR views = 1000 samples per path
KS_LIMIT = 0.1
SPREAD_LIMIT = 0.1  # means within 0.1 standard deviations, standard deviations within 10%
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std: views stay in [0, 1] for measuring
OFF = dict(hflip_prob=0.0, vflip_prob=0.0, rotation_prob=0.0, cj_prob=0.0, gray_prob=0.0)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance between the empirical CDFs of two samples."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, points, side="right") / len(a)
                        - np.searchsorted(b, points, side="right") / len(b)).max())


def both_paths(image: np.ndarray, aug: PretrainAugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR views of N_IMAGES copies of ``image`` (S, S, 3) uint8.

    Returns:
        (worker views, device views), each (2N, 3, S, S) in [0, 1].
    """
    torch.manual_seed(0)
    np.random.seed(0)
    transform = simclr_transform(aug, SIZE, *RAW)
    pil = Image.fromarray(image)
    worker = torch.stack([view for _ in range(N_IMAGES) for view in transform(pil)])
    batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(N_IMAGES, 1, 1, 1).contiguous()
    device = torch.cat(simclr_device_views(aug, SIZE, *RAW)(batch))
    return worker, device


def assert_same_distribution(worker: np.ndarray, device: np.ndarray, what: str, ks_limit: float = KS_LIMIT,
                             spread_limit: float = SPREAD_LIMIT) -> None:
    """Same shape (KS), and the same centre and spread to ``spread_limit`` of the worker path's spread."""
    statistic = ks_statistic(worker, device)
    spread = worker.std() + 1e-6
    # PIL rounds each jitter step to 8 bits, which moves the worker path's mean by up to about one level.
    same = (statistic < ks_limit and abs(device.mean() - worker.mean()) < max(spread_limit * spread, 1.5 / 255)
            and abs(device.std() / spread - 1) < spread_limit)
    assert same, (f"{what}: KS {statistic:.3f}; worker mean {worker.mean():.3f} sd {worker.std():.3f}, "
                                  f"device mean {device.mean():.3f} sd {device.std():.3f}")


def ramp_image() -> np.ndarray:
    """A ramp in x (red) and y (green): a view's red and green ranges are its crop's width and height."""
    ramp = np.arange(SIZE, dtype=np.float64) * 255 / (SIZE - 1)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 0] = np.round(ramp)[None, :]
    image[..., 1] = np.round(ramp)[:, None]
    return image


def crop_area(views: torch.Tensor) -> np.ndarray:
    """(N,) area share of each view's crop box, read from the ramps of :func:`ramp_image`."""
    width = views[:, 0].amax((1, 2)) - views[:, 0].amin((1, 2))
    height = views[:, 1].amax((1, 2)) - views[:, 1].amin((1, 2))
    return (width * height).numpy()


def test_crop_area_fraction() -> None:
    worker, device = both_paths(ramp_image(), PretrainAugmentConfig(**OFF))
    assert_same_distribution(crop_area(worker), crop_area(device), "crop area fraction")
    assert 0.5 < crop_area(device).mean() < 0.7  # scale uniform in [0.2, 1]: mean area about 0.6


def test_flip_rates() -> None:
    """Quadrants of four grey levels: which quadrant is brightest tells the flips (no crop, no rotation)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    half = SIZE // 2
    image[:half, half:], image[half:, :half], image[half:, half:] = 85, 170, 255
    aug = PretrainAugmentConfig(**{**OFF, "hflip_prob": 0.5, "vflip_prob": 0.5}, min_scale=1.0)
    worker, device = both_paths(image, aug)

    def brightest_quadrant(views: torch.Tensor) -> np.ndarray:
        grey = views.mean(1)  # (N, S, S)
        quadrants = torch.stack([grey[:, :half, :half].mean((1, 2)), grey[:, :half, half:].mean((1, 2)),
                                 grey[:, half:, :half].mean((1, 2)), grey[:, half:, half:].mean((1, 2))], 1)
        return quadrants.argmax(1).numpy()

    for name, views in (("worker", worker), ("device", device)):
        rates = np.bincount(brightest_quadrant(views), minlength=4) / len(views)
        assert np.allclose(rates, 0.25, atol=0.05), (name, rates)  # hflip x vflip, each 1/2


def test_rotation_black_corners() -> None:
    """A white image: the black share of a view grows with the rotation angle (half the views rotate)."""
    white = np.full((SIZE, SIZE, 3), 255, np.uint8)
    worker, device = both_paths(white, PretrainAugmentConfig(**{**OFF, "rotation_prob": 0.5}, min_scale=1.0))

    def black_share(views: torch.Tensor) -> np.ndarray:
        return (views.mean(1) < 0.5).float().mean((1, 2)).numpy()

    assert_same_distribution(black_share(worker), black_share(device), "black share after rotation")
    assert 0.4 < (black_share(device) > 0.02).mean() < 0.6


@pytest.mark.parametrize("colour", [(180, 120, 90), (90, 150, 200)])
def test_colour_jitter_and_greyscale(colour: tuple[int, int, int]) -> None:
    """A flat colour: brightness, saturation, hue and greyscale move each channel's level."""
    flat = np.zeros((SIZE, SIZE, 3), np.uint8) + np.array(colour, np.uint8)
    worker, device = both_paths(flat, replace(PretrainAugmentConfig(**OFF), cj_prob=0.8, gray_prob=0.1, min_scale=1.0))
    for channel, name in enumerate("RGB"):
        assert_same_distribution(worker[:, channel].mean((1, 2)).numpy(), device[:, channel].mean((1, 2)).numpy(),
                                 f"channel {name} level")
    spread_w = (worker.mean((2, 3)).amax(1) - worker.mean((2, 3)).amin(1)).numpy()
    spread_d = (device.mean((2, 3)).amax(1) - device.mean((2, 3)).amin(1)).numpy()
    assert_same_distribution(spread_w, spread_d, "colourfulness (max - min channel)")


def test_hue() -> None:
    """A flat blue: a hue shift moves the green level alone (value and chroma stay).

    PIL's 8-bit HSV, which the worker path's jitter runs in, rounds each shift to 1/255 of the
    circle and moves the unshifted colour too (green 150 -> 152), so its levels are discrete and
    offset: the spread of green about its median is compared (to 20%), not the distribution.
    """
    flat = np.zeros((SIZE, SIZE, 3), np.uint8) + np.array((90, 150, 200), np.uint8)
    worker, device = both_paths(flat, replace(PretrainAugmentConfig(**OFF), cj_prob=0.8, cj_bright=0.0, cj_contrast=0.0,
                                              cj_sat=0.0, min_scale=1.0))
    green_w, green_d = (v[:, 1].mean((1, 2)).numpy() for v in (worker, device))
    spread_w, spread_d = (np.abs(g - np.median(g)).mean() for g in (green_w, green_d))
    assert abs(spread_d / spread_w - 1) < 0.2, (spread_w, spread_d)
    assert np.abs(device[:, [0, 2]] - torch.tensor([90 / 255, 200 / 255]).view(1, 2, 1, 1)).max() < 1e-4  # R, B stay


def test_contrast() -> None:
    """A grey ramp: contrast (and brightness) set the spread of grey levels within a view."""
    ramp = np.round(np.linspace(40, 215, SIZE)).astype(np.uint8)
    image = np.repeat(np.repeat(ramp[None, :, None], SIZE, 0), 3, 2)
    worker, device = both_paths(image, replace(PretrainAugmentConfig(**OFF), cj_prob=0.8, cj_sat=0.0, cj_hue=0.0,
                                               min_scale=1.0))
    assert_same_distribution(worker.mean(1).std((1, 2)).numpy(), device.mean(1).std((1, 2)).numpy(), "grey spread")


def test_finetune_paths_match() -> None:
    """finetune.transforms.train_transform against its device twin: rotation always, small jitter."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8) + np.array((180, 120, 90), np.uint8)
    torch.manual_seed(0)
    transform = train_transform(SIZE, *RAW, FinetuneAugment(rotation=180.0))
    pil = Image.fromarray(image)
    worker = torch.stack([transform(pil) for _ in range(2 * N_IMAGES)])
    batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(2 * N_IMAGES, 1, 1, 1).contiguous()
    device = train_device_augment(SIZE, *RAW, FinetuneAugment(rotation=180.0))(batch)
    # Dark: below half the image's own grey level (0.51 +- 10%), so that the worker path's bilinear
    # edge (half image, half black fill) counts as the device path's sharp edge does.
    black_w, black_d = ((v.mean(1) < 0.25).float().mean((1, 2)).numpy() for v in (worker, device))
    assert_same_distribution(black_w, black_d, "black share after rotation")
    lit_w, lit_d = ((v.mean(1) >= 0.4).float() for v in (worker, device))
    for channel in range(3):  # the level of the image's own pixels (the black corners left out)
        level_w = ((worker[:, channel] * lit_w).sum((1, 2)) / lit_w.sum((1, 2))).numpy()
        level_d = ((device[:, channel] * lit_d).sum((1, 2)) / lit_d.sum((1, 2))).numpy()
        assert_same_distribution(level_w, level_d, f"finetune channel {channel} level")


def test_finetune_right_angles_draw_the_eight_orientations() -> None:
    """augment.right_angles: flips and turns give each of the square's 8 orientations 1/8 of the
    time in both fine-tuning paths, with no black corners (four grey levels tell the orientation)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8) + 40
    half = SIZE // 2
    image[:half, half:], image[half:, :half], image[half:, half:] = 100, 160, 220
    pil = Image.fromarray(image)
    batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(2 * N_IMAGES, 1, 1, 1).contiguous()
    torch.manual_seed(0)
    transform = train_transform(SIZE, *RAW, FinetuneAugment(jitter=0.0, right_angles=True))
    worker = torch.stack([transform(pil) for _ in range(2 * N_IMAGES)])
    device = train_device_augment(SIZE, *RAW, FinetuneAugment(jitter=0.0, right_angles=True))(batch)
    for name, views in (("worker", worker), ("device", device)):
        grey = views.mean(1)  # (N, S, S)
        quadrants = torch.stack([grey[:, :half, :half].mean((1, 2)), grey[:, :half, half:].mean((1, 2)),
                                 grey[:, half:, :half].mean((1, 2)), grey[:, half:, half:].mean((1, 2))], 1)
        orientation = quadrants.argsort(1)  # (N, 4): the quadrants' order of brightness
        _, counts = torch.unique(orientation, dim=0, return_counts=True)
        assert len(counts) == 8, (name, counts)
        assert np.allclose(counts.numpy() / len(views), 1 / 8, atol=0.04), (name, counts)
        assert views.min() > 30 / 255, name  # exact turns: no black corner
    unturned = train_transform(SIZE, *RAW, FinetuneAugment(jitter=0.0))
    assert len(torch.unique(torch.stack([unturned(pil) for _ in range(64)]).mean(1)
                            .view(64, -1)[:, [0, SIZE - 1]], dim=0)) <= 4  # flips alone: 4 orientations


def test_finetune_crop_paths_match() -> None:
    """augment.crop_scale: both fine-tuning paths crop the same area shares; 1.0 leaves the image whole."""
    image = ramp_image()
    pil = Image.fromarray(image)
    batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(2 * N_IMAGES, 1, 1, 1).contiguous()
    torch.manual_seed(0)
    transform = train_transform(SIZE, *RAW, FinetuneAugment(jitter=0.0, crop_scale=0.4))
    worker = torch.stack([transform(pil) for _ in range(2 * N_IMAGES)])
    device = train_device_augment(SIZE, *RAW, FinetuneAugment(jitter=0.0, crop_scale=0.4))(batch)
    assert_same_distribution(crop_area(worker), crop_area(device), "finetune crop area fraction")
    assert 0.6 < crop_area(device).mean() < 0.8  # scale uniform in [0.4, 1]: mean area about 0.7
    whole = train_device_augment(SIZE, *RAW, FinetuneAugment(jitter=0.0))(batch[:8])
    assert np.allclose(crop_area(whole), 1.0, atol=0.01)


def test_crop_boxes_fit_the_image_and_cover_the_scale() -> None:
    torch.manual_seed(0)
    boxes = crop_boxes(4000, 48, 64, (0.08, 1.0), torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 48).all() and (left + w <= 64).all()
    share = (h * w / (48 * 64)).numpy()
    assert share.min() < 0.1 and share.max() > 0.95
    assert ((w / h) < 3 / 4 - 0.05).sum() < 0.01 * len(share)  # aspect ratio within [3/4, 4/3] up to rounding


def test_views_shapes_dtype_and_normalisation() -> None:
    batch = torch.full((4, 3, SIZE, SIZE), 128, dtype=torch.uint8)
    views = dino_device_views(PretrainAugmentConfig(), SIZE, 16, 3, 0.4, 0.05, 0.4)(batch)
    assert [tuple(v.shape) for v in views] == [(4, 3, SIZE, SIZE)] * 2 + [(4, 3, 16, 16)] * 3
    plain = ViewAugment(ViewSpec(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))(batch)
    assert torch.allclose(plain, torch.full_like(plain, (128 / 255 - 0.5) / 0.25), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        MultiViewAugment([ViewSpec(size=SIZE)])(batch.float())


def test_every_sample_draws_its_own_parameters() -> None:
    """Per-sample, not per-batch: copies of one image come out different."""
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (16, 3, SIZE, SIZE), dtype=torch.uint8)[:1].repeat(16, 1, 1, 1)
    views = simclr_device_views(PretrainAugmentConfig(), SIZE, *RAW)(batch)[0]
    distinct = {tuple(v.flatten()[:64].tolist()) for v in views}
    assert len(distinct) == 16


def test_each_ddp_process_draws_its_own_views() -> None:
    """Every process starts from the run's seed; seed_for_process makes rank 1 draw other crops than rank 0."""
    batch = torch.randint(0, 256, (8, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    augment = simclr_device_views(PretrainAugmentConfig(), SIZE, *RAW)
    views = {}
    for rank in (0, 0, 1):
        torch.manual_seed(7)  # what pl.seed_everything does in every process
        seed_for_process(rank)
        views.setdefault(rank, []).append(augment(batch)[0])
    assert torch.equal(views[0][0], views[0][1])  # rank 0 keeps the run's stream: reproducible
    assert not torch.equal(views[0][0], views[1][0])


@pytest.mark.parametrize("on_host", [True, False])
def test_blur_and_vignette_subsets_are_drawn_alike_on_host_and_by_mask(on_host: bool,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the CPU a random subset is kept by a mask over every view (no count read on the host); on the CPU
    it is picked out. Either way each view is blurred (darkened) with its probability and the others are
    left exactly as they were. The mask branch runs here on the CPU by forcing the choice."""
    from dermkit.augment import batch

    monkeypatch.setattr(batch, "_pick_on_host", lambda device: on_host)
    torch.manual_seed(0)
    views = torch.rand(400, 3, 16, 16)
    blurred = batch._blur(views, ViewSpec(size=16, blur_prob=0.3, blur_sigmas=(1.0, 2.0)))
    darkened = batch._vignette_some(views, 0.6)
    for out, prob in ((blurred, 0.3), (darkened, 0.6)):
        changed = (out != views).flatten(1).any(1)  # (B,)
        assert abs(changed.float().mean().item() - prob) < 0.08
        assert torch.equal(out[~changed], views[~changed])
