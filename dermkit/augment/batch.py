"""Batched view augmentation: one call augments a whole (B, 3, S, S) uint8 batch where it lives.

The worker path (``data.augment_on=workers``) augments one PIL image at a time in the data-loader
workers (lightly's ``SimCLRTransform`` / ``DINOTransform``, torchvision v2 for fine-tuning): on a
GPU that path, not the network, sets the speed. The device path (``data.augment_on=device``)
ships the cached uint8 images as they are and augments them where the batch is, in the Lightning
module's ``on_after_batch_transfer`` (CPU, GPU, each DDP process). Every random parameter (crop
box, flips, angle, jitter factors, greyscale, blur sigma, solarisation) is drawn per sample.

Same operations and parameters as the worker path, in its order: random resized crop
(torchvision's sampling: area share uniform in ``crop_scale``, log aspect ratio uniform in
[3/4, 4/3], ten tries, then the whole image), horizontal and vertical flip, rotation (black
corners), colour jitter (brightness, contrast, saturation, hue factors as torchvision draws them),
greyscale, Gaussian blur (kornia, per-sample sigma), solarisation, then the normalisation (folded
in, so the loader ships uint8). What is done differently, for speed:

* crop, flips and rotation are one affine resampling (``grid_sample``, bilinear) instead of a
  crop-resize followed by a nearest-neighbour rotation: one interpolation instead of two;
* brightness and saturation are one 3x3 colour matrix per image, greyscale another; the four
  jitter steps run in one fixed order (brightness, saturation, hue, contrast) where torchvision
  draws a random order per image: brightness commutes with the others and the rest nearly do
  for the small factors used; the hue shift is torchvision's HSV formula computed directly
  (:func:`shift_hue`), not through PIL's 8-bit HSV image.

kornia.augmentation runs each operation as its own pass with its own bookkeeping: measured here,
its SimCLR pipeline cost about 30% of a ResNet-18 64-px step (2 busy CPU cores) (its HSV hue step alone half of
that), which misses the target of this path (>= 95% of the compute-only speed, issue 13); kornia
provides the per-sample Gaussian blur here. ``tests/dermkit/test_augment.py`` checks that
both paths draw crop areas, flips and colour shifts from the same distributions.

On a GPU a call waits for nothing: no step asks the host for a value computed on the device (a
boolean-mask index or ``nonzero`` needs the count on the host, and ``torch.tensor(..., device=cuda)``
copies from pageable memory and waits), so the host queues the augmentation and the training step
behind it without stalling. Constants live on the device once (:func:`device_constant`); the rotated
views' black corners are masked on every view; on a GPU every view is blurred (vignetted) and the result
kept where drawn (on a CPU, where reading the count costs nothing, only the drawn views are: less work;
:func:`_pick_on_host`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import kornia.filters
import torch
import torch.nn.functional as F


CROP_TRIES = 10  # torchvision's RandomResizedCrop tries ten boxes before taking the whole image
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # torchvision's rgb_to_grayscale (and YIQ's luma)


def seed_for_process(rank: int) -> None:
    """Give DDP process ``rank`` its own augmentation draws.

    Every process starts from the run's seed (``pl.seed_everything``), so without this each would
    draw the same crops and jitters for its different images (the worker path's loader workers get
    per-rank seeds from Lightning). Process 0 keeps the run's stream, so a one-device run is as seeded.
    """
    if rank:
        torch.manual_seed(torch.initial_seed() + int(rank))


@dataclass(frozen=True)
class ViewSpec:
    """The random operations of one view; a probability of 0 leaves a step out.

    Attributes:
        size: side s of the output view in px.
        crop_scale: (min, max) area share of the random resized crop; None = no crop (the input
            must already be s x s).
        hflip_prob: probability of a horizontal flip.
        vflip_prob: probability of a vertical flip.
        right_angles: turn by 0, 90, 180 or 270 degrees, each with probability 1/4 (after the
            flips, before ``rotation_prob``'s rotation, as the fine-tuning worker path does).
        rotation_prob: probability of a rotation by an angle drawn from
            [-rotation_degrees, rotation_degrees]; corners from outside the view are black.
        rotation_degrees: largest angle.
        cj_prob: probability of colour jitter.
        brightness: brightness factor drawn from [1 - brightness, 1 + brightness].
        contrast: contrast factor drawn from [1 - contrast, 1 + contrast].
        saturation: saturation factor drawn from [1 - saturation, 1 + saturation].
        hue: hue shift drawn from [-hue, hue] (share of the colour circle).
        gray_prob: probability of greyscale.
        blur_prob: probability of a Gaussian blur.
        blur_sigmas: (min, max) of the blur's standard deviation in px.
        solarize_prob: probability of solarisation (values at or above 0.5 inverted).
        zoom_out: largest zoom-out factor z >= 1: each view shows its crop shrunk by a side factor
            drawn uniformly from [1, z], centred, the border filled by mirroring the image (another
            camera's magnification; 1 = none).
        vignette_prob: probability of dark corners (:func:`vignette`), as a dermatoscope's round
            field of view leaves them.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
    """

    size: int
    crop_scale: tuple[float, float] | None = None
    hflip_prob: float = 0.0
    vflip_prob: float = 0.0
    right_angles: bool = False
    rotation_prob: float = 0.0
    rotation_degrees: float = 0.0
    cj_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    gray_prob: float = 0.0
    blur_prob: float = 0.0
    blur_sigmas: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    zoom_out: float = 1.0
    vignette_prob: float = 0.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)


@functools.lru_cache(maxsize=64)
def device_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """(len(values),) float32 constant on ``device``, made once: a fresh ``torch.tensor(values,
    device=cuda)`` per batch would be a copy from pageable host memory, which waits for the GPU.
    Read only (callers take views, never write into it)."""
    return torch.tensor(values, dtype=torch.float32).to(device)


def _pick_on_host(device: torch.device) -> bool:
    """Whether a random subset of views is picked out by index (its size read on the host) rather than
    every view computed and the subset kept by mask: on a CPU, where the read costs nothing and the
    subset saves work; elsewhere the read would wait for the device."""
    return device.type == "cpu"


def _bernoulli(p: float, n: int, device: torch.device) -> torch.Tensor:
    """(n,) bool, each True with probability p."""
    return torch.rand(n, device=device) < p


def _uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               device: torch.device) -> torch.Tensor:
    """(n, 4) crop boxes (top, left, h, w) in px, drawn as ``torchvision.transforms.RandomResizedCrop`` does.

    Each image tries :data:`CROP_TRIES` boxes (area share uniform in ``scale``, log aspect ratio
    uniform in [log 3/4, log 4/3]) and keeps the first that fits; none fitting, the whole image
    (the centre crop torchvision falls back to for a square image).
    """
    area = height * width
    target = area * torch.empty(n, CROP_TRIES, device=device).uniform_(*scale)  # (n, T)
    ratio = torch.exp(torch.empty(n, CROP_TRIES, device=device).uniform_(math.log(3 / 4), math.log(4 / 3)))
    w = torch.sqrt(target * ratio).round()  # (n, T)
    h = torch.sqrt(target / ratio).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (n, T)
    first = torch.where(fits.any(1), fits.float().argmax(1), -1)  # (n,) index of the first fitting try
    pick = first.clamp(min=0).unsqueeze(1)
    w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.full_like(first, width, dtype=w.dtype))
    h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.full_like(first, height, dtype=h.dtype))
    # torchvision: top = randint(0, H - h + 1), left = randint(0, W - w + 1)
    top = torch.floor(torch.rand(n, device=device) * (height - h + 1))
    left = torch.floor(torch.rand(n, device=device) * (width - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def _geometry(images: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """Crop, flips and rotation as one resampling: (B, 3, S, S) float -> (B, 3, s, s)."""
    n, _, height, width = images.shape
    device = images.device
    if spec.crop_scale is None:  # the whole image: (top, left, h, w) = (0, 0, H, W) for every view
        boxes = torch.zeros(n, 4, device=device)
        boxes[:, 2], boxes[:, 3] = height, width
    else:
        boxes = crop_boxes(n, height, width, spec.crop_scale, device)
    top, left, h, w = boxes.unbind(1)  # (B,) each, px
    angle = torch.zeros(n, device=device)
    if spec.rotation_prob > 0 and spec.rotation_degrees > 0:
        rotate = _bernoulli(spec.rotation_prob, n, device)
        angle = torch.where(rotate, _uniform(-spec.rotation_degrees, spec.rotation_degrees, n, device), angle)
    if spec.right_angles:  # a turn by 90 k maps the view's square onto itself: no black corners to add
        angle = angle + 90.0 * torch.randint(0, 4, (n,), device=device)
    flip_x = torch.where(_bernoulli(spec.hflip_prob, n, device), -1.0, 1.0) if spec.hflip_prob > 0 else None
    flip_y = torch.where(_bernoulli(spec.vflip_prob, n, device), -1.0, 1.0) if spec.vflip_prob > 0 else None
    # Output pixel u (normalised view coordinates, [-1, 1]^2) -> undo the rotation -> undo the flips
    # -> point f in the crop's normalised frame -> point in the image's normalised frame.
    radians = angle * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (B, 2, 2)
    if flip_x is not None:
        rot[:, 0] *= flip_x.unsqueeze(1)
    if flip_y is not None:
        rot[:, 1] *= flip_y.unsqueeze(1)
    # The crop's half-extent and centre in the image's normalised frame: one affine map for all four steps.
    half = torch.stack([w / width, h / height], 1)  # (B, 2)
    centre = torch.stack([(2 * left + w) / width - 1, (2 * top + h) / height - 1], 1)  # (B, 2)
    zoom = _uniform(1.0, spec.zoom_out, n, device) if spec.zoom_out > 1 else None  # (B,) side factor
    sampled = half if zoom is None else half * zoom.unsqueeze(1)  # (B, 2): a zoomed-out view reaches past its crop
    theta = torch.cat([rot * sampled.unsqueeze(2), centre.unsqueeze(2)], 2)  # (B, 2, 3)
    grid = F.affine_grid(theta, [n, 3, spec.size, spec.size], align_corners=False)  # (B, s, s, 2)
    # "border": a point in the image's outer half pixel takes the edge pixel, as PIL's resize and rotate
    # do; what lies outside the crop is blacked out below. Zooming out mirrors the image instead, as
    # the worker path's reflect padding does.
    views = F.grid_sample(images, grid, mode="bilinear", align_corners=False,
                          padding_mode="border" if zoom is None else "reflection")
    if spec.rotation_prob > 0 and spec.rotation_degrees > 0:
        # Black where a rotated view reaches beyond its crop, as the worker path's rotation fills. Only
        # views turned by other than right angles can; the mask is computed for every view and kept for
        # those (picking them out would need their count on the host: a wait on a GPU; on a CPU the
        # whole-batch mask measured no slower than the subset's gather and scatter).
        offset = (grid - centre.view(-1, 1, 1, 2)).abs_()  # (B, s, s, 2)
        inside = (offset <= sampled.view(-1, 1, 1, 2) * (1 + 1e-6)).all(-1)  # (B, s, s)
        inside |= (angle.remainder(90.0) == 0).view(-1, 1, 1)
        views *= inside.unsqueeze(1)
    return views


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turn the HSV hue of (B, 3, H, W) images in [0, 1] by ``shift`` (B,) of the colour circle.

    torchvision's ``adjust_hue`` without its round trip through HSV tensors: value (max) and
    chroma (max - min) stay, the hue sector moves (the standard HSV -> RGB formula).
    """
    top, sector = images.max(1, keepdim=True)  # (B, 1, H, W): value and its channel (red first on ties)
    chroma = top - images.amin(1, keepdim=True)
    # Hue in sixths of the circle: red (g - b)/C, green (b - r)/C + 2, blue (r - g)/C + 4. In-place
    # steps: on a CPU, allocating each intermediate costs as much as computing it.
    ahead = images.roll(-1, 1).sub_(images.roll(-2, 1))  # (B, 3, H, W): channel k holds x[k+1] - x[k+2]
    hue = ahead.gather(1, sector).div_(torch.where(chroma > 0, chroma, torch.ones_like(chroma)))
    hue.add_(sector, alpha=2.0).add_(6.0 * shift.view(-1, 1, 1, 1))  # (B, 1, H, W), shifted
    k = hue + device_constant((5.0, 3.0, 1.0), images.device).view(1, 3, 1, 1)  # (B, 3, H, W)
    k.remainder_(6.0)
    k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return torch.addcmul(top, chroma, k, value=-1.0)  # top - chroma * k


def _colour(views: torch.Tensor, spec: ViewSpec, scale: float = 1.0) -> torch.Tensor:
    """Colour jitter and greyscale of (B, 3, s, s) views in [0, 1 / scale]; the result is in [0, 1].

    ``scale`` (1/255 for uint8 values) rides on the colour matrix, saving a pass over the batch.
    """
    n, device = views.shape[0], views.device
    jitter = spec.cj_prob > 0 and bool(spec.brightness or spec.contrast or spec.saturation or spec.hue)
    grey = device_constant(GREY_WEIGHTS, device)
    eye = torch.eye(3, device=device).expand(n, 3, 3)
    matrix = eye * scale
    if not jitter:
        out = views
    else:
        on = _bernoulli(spec.cj_prob, n, device)

        def factor(strength: float) -> torch.Tensor:  # (B,) 1 where jitter is off
            drawn = _uniform(max(0.0, 1 - strength), 1 + strength, n, device)
            return torch.where(on, drawn, torch.ones_like(drawn))

        if spec.brightness:
            matrix = matrix * factor(spec.brightness).view(n, 1, 1)
        if spec.saturation:  # torchvision: blend with the grey image
            s = factor(spec.saturation).view(n, 1, 1)
            matrix = (s * eye + (1 - s) * grey.view(1, 1, 3).expand(n, 3, 3)) @ matrix
        out = torch.bmm(matrix, views.flatten(2)).view_as(views).clamp_(0.0, 1.0)  # (B, 3, s, s)
        matrix = eye
        if spec.hue:
            shift = torch.where(on, _uniform(-spec.hue, spec.hue, n, device), torch.zeros(n, device=device))
            out = shift_hue(out, shift)
        if spec.contrast:  # torchvision: blend with the mean grey level of the image
            c = factor(spec.contrast).view(n, 1, 1, 1)
            mean_grey = torch.einsum("c,bchw->b", grey, out).view(n, 1, 1, 1) / (out.shape[-1] * out.shape[-2])
            out.mul_(c).add_((1 - c) * mean_grey).clamp_(0.0, 1.0)
    if spec.gray_prob > 0:
        matrix = torch.where(_bernoulli(spec.gray_prob, n, device).view(n, 1, 1),
                             grey.view(1, 1, 3).expand(n, 3, 3), eye) @ matrix
    if spec.gray_prob > 0 or not jitter:
        out = torch.bmm(matrix, out.flatten(2)).view_as(out)
    return out.clamp_(0.0, 1.0)


VIGNETTE_STRENGTH = (0.5, 1.0)  # share of the brightness taken from the corners
VIGNETTE_INNER = (0.55, 0.85)  # radius where darkening starts, as a share of the centre-corner distance


def vignette(views: torch.Tensor) -> torch.Tensor:
    """Dark corners on (B, 3, H, W) views in [0, 1], each with its own strength and inner radius.

    The brightness falls smoothly (smoothstep) from 1 at the inner radius to ``1 - strength`` at
    the corners: the round field of view of another dermatoscope (PH2's images have black corners,
    HAM10000's mostly none). Strength and inner radius are drawn uniformly from
    :data:`VIGNETTE_STRENGTH` and :data:`VIGNETTE_INNER`.
    """
    n, _, height, width = views.shape
    device = views.device
    ys = torch.linspace(-1.0, 1.0, height, device=device).view(1, height, 1)
    xs = torch.linspace(-1.0, 1.0, width, device=device).view(1, 1, width)
    radius = torch.sqrt((xs ** 2 + ys ** 2) / 2)  # (1, H, W): 0 at the centre, 1 at the corners
    strength = _uniform(*VIGNETTE_STRENGTH, n, device).view(n, 1, 1)
    inner = _uniform(*VIGNETTE_INNER, n, device).view(n, 1, 1)
    t = ((radius - inner) / (1 - inner)).clamp_(0.0, 1.0)  # (B, H, W)
    mask = 1 - strength * t * t * (3 - 2 * t)
    return views * mask.unsqueeze(1)


def _vignette_some(views: torch.Tensor, prob: float) -> torch.Tensor:
    """:func:`vignette` on a random share ``prob`` of the views (as :func:`_blur`: off the CPU every view is
    darkened and kept where chosen, since picking the chosen ones out would wait for the GPU)."""
    chosen = _bernoulli(prob, views.shape[0], views.device)  # (B,)
    if not _pick_on_host(views.device):
        return torch.where(chosen.view(-1, 1, 1, 1), vignette(views), views)
    picked = chosen.nonzero().squeeze(1)
    if picked.numel() == 0:
        return views
    views = views.clone()
    views[picked] = vignette(views[picked])
    return views


def _blur(views: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """Gaussian blur of a random subset of the views, each with its own sigma (kornia).

    On a CPU only the chosen views are blurred. Elsewhere every view is blurred and the blurred one
    kept where chosen: picking the chosen ones out needs their count on the host, which waits for the
    GPU. Each view is blurred with probability ``blur_prob`` and a sigma uniform in ``blur_sigmas``
    either way.
    """
    n = views.shape[0]
    chosen = _bernoulli(spec.blur_prob, n, views.device)  # (B,)
    # PIL's GaussianBlur(radius=sigma), which lightly uses, reaches about 3 sigma on each side.
    kernel = min(2 * math.ceil(3 * spec.blur_sigmas[1]) + 1, 2 * (views.shape[-1] // 2) - 1)
    if not _pick_on_host(views.device):
        sigma = _uniform(*spec.blur_sigmas, n, views.device)
        blurred = kornia.filters.gaussian_blur2d(views, kernel, sigma.unsqueeze(1).expand(-1, 2))
        return torch.where(chosen.view(-1, 1, 1, 1), blurred, views)
    picked = chosen.nonzero().squeeze(1)
    if picked.numel() == 0:
        return views
    sigma = _uniform(*spec.blur_sigmas, picked.numel(), views.device)
    views = views.clone()
    views[picked] = kornia.filters.gaussian_blur2d(views[picked], kernel, sigma.unsqueeze(1).expand(-1, 2))
    return views


class ViewAugment:
    """One augmented, normalised view of every image of a uint8 batch.

    A plain callable, not a ``nn.Module``: it holds no state, so checkpoints hold the network
    alone whichever path trained it. Random numbers come from torch's generator of the batch's
    device.

    Args:
        spec: the view's operations and their parameters.
    """

    def __init__(self, spec: ViewSpec) -> None:
        if len(spec.mean) != 3 or len(spec.std) != 3:
            raise ValueError(f"mean and std need 3 channels, got {spec.mean} and {spec.std}")
        self.spec = spec

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 images -> (B, 3, s, s) float32 views, normalised with ``mean`` / ``std``."""
        spec = self.spec
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, S, S) uint8 batch, got {tuple(images.shape)} {images.dtype}")
        if spec.crop_scale is None and images.shape[-1] != spec.size:
            raise ValueError(f"images are {images.shape[-1]} px, the view is {spec.size} px and has no crop")
        x = _geometry(images.float(), spec)  # (B, 3, s, s) in [0, 255]
        x = _colour(x, spec, scale=1 / 255)  # in [0, 1]
        if spec.vignette_prob > 0:
            x = _vignette_some(x, spec.vignette_prob)
        if spec.blur_prob > 0:
            x = _blur(x, spec)
        if spec.solarize_prob > 0:
            solarize = _bernoulli(spec.solarize_prob, x.shape[0], x.device).view(-1, 1, 1, 1)
            x = torch.where(solarize & (x >= 0.5), 1.0 - x, x)
        scale = 1.0 / device_constant(tuple(spec.std), x.device).view(1, 3, 1, 1)
        return torch.addcmul(-device_constant(tuple(spec.mean), x.device).view(1, 3, 1, 1) * scale, x, scale)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> (B, 3, S, S) float32 ``(x / 255 - mean) / std``, where the batch is.

    The evaluation images of ``data.augment_on=resident``: what ``finetune.transforms.eval_transform``
    and ``ssl.transforms.eval_transform`` (scale to [0, 1], normalise) make of an image, on a whole batch.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, S, S) uint8 batch, got {tuple(images.shape)} {images.dtype}")
    device = images.device
    mean_t = device_constant(tuple(float(m) for m in mean), device).view(1, 3, 1, 1)
    std_t = device_constant(tuple(float(s) for s in std), device).view(1, 3, 1, 1)
    return images.float().mul_(1.0 / 255).sub_(mean_t).div_(std_t)  # torchvision's ToDtype(scale=True), Normalize


class MultiViewAugment:
    """Several views of every image of a uint8 batch (SimCLR: 2; DINO: 2 global + local crops).

    Args:
        specs: one :class:`ViewSpec` per view, in the order the method expects its views.
    """

    def __init__(self, specs: Sequence[ViewSpec]) -> None:
        if not specs:
            raise ValueError("MultiViewAugment needs at least one view")
        self.specs = list(specs)
        # Views with the same spec (SimCLR's two) run as one batch: half the calls, the same draws.
        self.groups: dict[ViewSpec, list[int]] = {}
        for index, spec in enumerate(self.specs):
            self.groups.setdefault(spec, []).append(index)
        self.augments = {spec: ViewAugment(spec) for spec in self.groups}

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) uint8 -> V views, view v of shape (B, 3, s_v, s_v), float32 and normalised."""
        views: list[torch.Tensor] = [images] * len(self.specs)
        for spec, indices in self.groups.items():
            batch = images.repeat(len(indices), 1, 1, 1) if len(indices) > 1 else images  # (k B, 3, S, S)
            for index, view in zip(indices, self.augments[spec](batch).chunk(len(indices))):
                views[index] = view
        return views
