"""The embedded demo dataset: procedural, dermoscopy-like images in HAM10000 format.

THIS IS DEMO DATA, NEVER EVIDENCE. The images are drawn by a few lines of numpy (blobs on
skin-toned backgrounds), not photographed. They exist so that every command runs offline on a
fresh machine and the tests have labelled images to work with. A score measured on them says
nothing about skin lesions; report results on real data (HAM10000, ISIC) only.

What the generator draws, per class (the cues a small network can pick up, loosely after the
dermoscopic features of each diagnosis):

==========  ========================================================================
class       look
==========  ========================================================================
``nv``      brown, round, smooth border, uniform colour, slightly darker centre
``mel``     dark brown to black with blue-grey and reddish patches, irregular border
``bkl``     tan, waxy, moderately irregular, fine mottled texture
``bcc``     pinkish pearly, translucent, thin red branching vessels
``akiec``   reddish, ill-defined border, white scaly speckles
``df``      small, brownish ring with a pale centre
``vasc``    red to purple lobules with sharp borders
==========  ========================================================================

Class counts follow HAM10000's imbalance (proportional to its 10,015 images, but at least
:data:`MIN_PER_CLASS` per class). About one lesion in four has 2-3 images (same ``lesion_id``,
slightly shifted, rotated and re-lit), so lesion-grouped splits are exercised. Output is a function
of ``(n_images, seed)`` only.

Layout written (read by the ``ham10000`` reader)::

    <cache_dir>/demo-v1/HAM10000_metadata.csv   lesion_id,image_id,dx,dx_type,age,sex,localization
    <cache_dir>/demo-v1/images/<image_id>.png   64x64 RGB
    <cache_dir>/demo-v1/README.txt              says it is demo data
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermkit.console import progress
from dermkit.errors import DermkitError

DEMO_VERSION = "demo-v1"
DEFAULT_N_IMAGES = 1200
DEFAULT_SEED = 0
IMAGE_SIZE = 64
MIN_PER_CLASS = 24
METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")

# HAM10000's images per class: the imbalance the demo data copies.
HAM10000_COUNTS: dict[str, int] = {
    "akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142,
}
DEMO_CLASSES: tuple[str, ...] = tuple(HAM10000_COUNTS)

_SHARE_MULTI_IMAGE = 0.25  # share of lesions photographed 2-3 times
_LOCALIZATIONS = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face",
                  "chest", "foot", "scalp", "neck", "hand")
# Background skin tones (RGB in [0, 1]), light to medium.
_SKIN_TONES = np.array([
    [0.93, 0.78, 0.70], [0.89, 0.72, 0.62], [0.84, 0.66, 0.55], [0.78, 0.60, 0.48],
    [0.91, 0.75, 0.72], [0.72, 0.54, 0.42],
])


@dataclass(frozen=True)
class _ClassStyle:
    """How one class is drawn (all colours RGB in [0, 1])."""

    colours: tuple[tuple[float, float, float], ...]  # mixed by smooth noise inside the lesion
    radius: tuple[float, float]  # lesion radius range, in half-image units
    irregularity: float  # amplitude of the border's radial noise
    edge: float  # width of the soft border (larger = ill-defined)
    texture: float  # amplitude of fine, high-frequency texture
    texture_cells: int  # grid cells of the colour-mixing noise (more = patchier)
    opacity: float  # how much the lesion covers the skin (less = translucent)


_STYLES: dict[str, _ClassStyle] = {
    "nv": _ClassStyle(((0.45, 0.28, 0.17), (0.38, 0.22, 0.13)), (0.35, 0.55), 0.04, 0.06, 0.02, 2, 0.92),
    "mel": _ClassStyle(((0.16, 0.09, 0.07), (0.33, 0.20, 0.14), (0.35, 0.38, 0.48), (0.55, 0.25, 0.22)),
                       (0.45, 0.70), 0.22, 0.05, 0.05, 5, 0.95),
    "bkl": _ClassStyle(((0.66, 0.50, 0.33), (0.55, 0.40, 0.25)), (0.35, 0.60), 0.12, 0.05, 0.10, 8, 0.80),
    "bcc": _ClassStyle(((0.88, 0.60, 0.62), (0.96, 0.86, 0.84)), (0.30, 0.50), 0.08, 0.08, 0.03, 3, 0.75),
    "akiec": _ClassStyle(((0.78, 0.40, 0.35), (0.70, 0.33, 0.30)), (0.35, 0.60), 0.15, 0.20, 0.04, 4, 0.70),
    "df": _ClassStyle(((0.52, 0.34, 0.24), (0.47, 0.30, 0.21)), (0.20, 0.32), 0.06, 0.07, 0.02, 2, 0.85),
    "vasc": _ClassStyle(((0.62, 0.10, 0.18), (0.42, 0.10, 0.32)), (0.30, 0.50), 0.05, 0.02, 0.02, 3, 0.95),
}


def demo_folder_name(n_images: int = DEFAULT_N_IMAGES, seed: int = DEFAULT_SEED) -> str:
    """Folder name of one demo dataset: ``demo-v1`` for the defaults, else with size and seed.

    Other sizes or seeds get their own folder so that a cached dataset is never returned for
    arguments it was not generated with.
    """
    if (n_images, seed) == (DEFAULT_N_IMAGES, DEFAULT_SEED):
        return DEMO_VERSION
    return f"{DEMO_VERSION}-n{n_images}-seed{seed}"


def ensure_demo_dataset(cache_dir: Path, n_images: int = DEFAULT_N_IMAGES, seed: int = DEFAULT_SEED) -> Path:
    """Return the demo dataset's folder under ``cache_dir``, generating it on first use.

    Generation writes into a temporary folder beside the final one and renames it into place, so
    an interrupted run never leaves a half-written dataset and concurrent callers get the same one.

    Args:
        cache_dir: the cache folder (``data.cache_dir``); created if missing.
        n_images: total images; at least ``7 * MIN_PER_CLASS``.
        seed: generator seed; the same ``(n_images, seed)`` gives identical files.

    Returns:
        The folder holding ``HAM10000_metadata.csv`` and ``images/`` (``<cache_dir>/demo-v1``
        for the defaults).

    Raises:
        DermkitError: ``n_images`` too small, or ``cache_dir`` cannot be written.
    """
    minimum = MIN_PER_CLASS * len(DEMO_CLASSES)
    if n_images < minimum:
        raise DermkitError(f"The demo dataset needs at least {minimum} images ({MIN_PER_CLASS} per class); got {n_images}.")
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / demo_folder_name(n_images, seed)
    if (final / "HAM10000_metadata.csv").is_file():
        return final
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-tmp-", dir=cache_dir))
    except OSError as err:
        raise DermkitError(f"Cannot write the demo dataset into {cache_dir}: {err}. "
                           "Set data.cache_dir (or $DERMKIT_CACHE) to a writable folder.") from None
    try:
        _write_dataset(tmp, n_images, seed)
        if final.exists() and not (final / "HAM10000_metadata.csv").is_file():
            # Only this module writes this folder, always by rename: without its CSV it is debris
            # from a run of an older version, safe to replace.
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "HAM10000_metadata.csv").is_file():
                raise
            # Another process finished first; its files are identical.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def class_counts(n_images: int) -> dict[str, int]:
    """Images per class: proportional to HAM10000, at least :data:`MIN_PER_CLASS`, summing to ``n_images``.

    Classes whose proportional share falls below the minimum get the minimum; the rest is shared
    among the other classes in proportion (largest remainder).
    """
    fixed: dict[str, int] = {}
    while True:
        free = {c: n for c, n in HAM10000_COUNTS.items() if c not in fixed}
        budget = n_images - sum(fixed.values())
        total = sum(free.values())
        share = {c: budget * n / total for c, n in free.items()}
        small = {c for c, s in share.items() if s < MIN_PER_CLASS}
        if not small:
            break
        fixed.update({c: MIN_PER_CLASS for c in small})
    counts = {c: int(s) for c, s in share.items()}
    by_remainder = sorted(share, key=lambda c: (share[c] - counts[c], c), reverse=True)
    for c in by_remainder[: budget - sum(counts.values())]:
        counts[c] += 1
    counts.update(fixed)
    return {c: counts[c] for c in DEMO_CLASSES}


@dataclass(frozen=True)
class _Lesion:
    lesion_id: str
    dx: str
    n_images: int
    age: int
    sex: str
    localization: str
    seed: int


def _plan_lesions(n_images: int, rng: np.random.Generator) -> list[_Lesion]:
    """Lesions per class, about one in four with 2-3 images, in a shuffled order."""
    plan: list[tuple[str, int]] = []
    for dx, count in class_counts(n_images).items():
        left = count
        while left > 0:
            k = int(rng.integers(2, 4)) if rng.random() < _SHARE_MULTI_IMAGE else 1
            k = min(k, left)
            plan.append((dx, k))
            left -= k
    order = rng.permutation(len(plan))
    lesions = []
    for number, idx in enumerate(order):
        dx, k = plan[idx]
        lesions.append(_Lesion(
            lesion_id=f"DEMOL_{number:07d}", dx=dx, n_images=k, age=int(rng.integers(4, 18)) * 5,
            sex=str(rng.choice(("male", "female"))), localization=str(rng.choice(_LOCALIZATIONS)),
            seed=int(rng.integers(2**31)),
        ))
    return lesions


def _write_dataset(folder: Path, n_images: int, seed: int) -> None:
    images_dir = folder / "images"
    images_dir.mkdir()
    rng = np.random.default_rng(seed)
    lesions = _plan_lesions(n_images, rng)
    rows: list[dict[str, str]] = []
    with progress(transient=True) as bar:
        task = bar.add_task("Generating demo images", total=n_images)
        for lesion in lesions:
            lesion_rng = np.random.default_rng(lesion.seed)
            params = _lesion_params(lesion.dx, lesion_rng)
            for _ in range(lesion.n_images):
                image_id = f"DEMO_{len(rows):07d}"
                pixels = _draw_image(lesion.dx, params, lesion_rng)
                Image.fromarray(pixels).save(images_dir / f"{image_id}.png", compress_level=1)
                rows.append({"lesion_id": lesion.lesion_id, "image_id": image_id, "dx": lesion.dx,
                             "dx_type": "demo", "age": f"{lesion.age:.1f}", "sex": lesion.sex,
                             "localization": lesion.localization})
                bar.advance(task)
    with open(folder / "HAM10000_metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "README.txt").write_text(
        "DEMO DATA - procedural images drawn by dermkit.data.demo, NOT photographs of skin.\n"
        f"{len(rows)} images, {len(lesions)} lesions, seed {seed}. For running commands offline "
        "and for tests; never report a result measured on it.\n")


# --- drawing ---------------------------------------------------------------------------------
# Coordinates are in half-image units: the image spans [-1, 1] on both axes.

_AXIS = np.linspace(-1.0, 1.0, IMAGE_SIZE)
_YY, _XX = np.meshgrid(_AXIS, _AXIS, indexing="ij")  # (S, S) each


def _smooth_noise(rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
    """(S, S, channels) smooth noise in [0, 1]: a (cells+1)^2 random grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1, channels))
    pos = np.linspace(0.0, cells, IMAGE_SIZE)
    i0 = np.minimum(pos.astype(int), cells - 1)  # (S,)
    w = (pos - i0)[:, None]  # (S, 1)
    rows = grid[i0] * (1 - w[..., None]) + grid[i0 + 1] * w[..., None]  # (S, cells+1, C)
    return rows[:, i0] * (1 - w.T[..., None]) + rows[:, i0 + 1] * w.T[..., None]  # (S, S, C)


def _lesion_params(dx: str, rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """What stays fixed across the images of one lesion: shape, colours, skin."""
    style = _STYLES[dx]
    n_harmonics = 6
    decay = 1.0 / np.arange(1, n_harmonics + 1)  # lower harmonics dominate: lumpy, not spiky
    return {
        "radius": rng.uniform(*style.radius),
        "harmonics": rng.normal(0.0, style.irregularity, n_harmonics) * decay * (1 + 2 * (np.arange(n_harmonics) > 1)),
        "phases": rng.uniform(0, 2 * np.pi, n_harmonics),
        "skin": _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05, 3),
        "colours": np.array(style.colours) * rng.uniform(0.9, 1.1, (len(style.colours), 1)),
        "centre": rng.uniform(-0.12, 0.12, 2),
        "lobules": rng.uniform(-0.5, 0.5, (int(rng.integers(3, 7)), 2)),  # vasc: lobule centres
        "vessels": rng.uniform(0, 2 * np.pi, (int(rng.integers(2, 5)), 2)),  # bcc: vessel angles
    }


def _draw_image(dx: str, params: dict, rng: np.random.Generator) -> np.ndarray:
    """One (S, S, 3) uint8 image of a lesion, with per-image shift, rotation, scale and lighting."""
    style = _STYLES[dx]
    shift = params["centre"] + rng.normal(0.0, 0.04, 2)
    rotation = rng.normal(0.0, 0.3)
    scale = params["radius"] * rng.uniform(0.93, 1.07)
    y, x = _YY - shift[0], _XX - shift[1]
    r = np.hypot(x, y)  # (S, S)
    theta = np.arctan2(y, x) + rotation
    k = np.arange(1, len(params["harmonics"]) + 1)[:, None, None]
    outline = scale * (1 + np.sum(params["harmonics"][:, None, None] * np.cos(k * theta + params["phases"][:, None, None]), axis=0))
    inside = np.clip((outline - r) / style.edge + 0.5, 0.0, 1.0)  # (S, S): 1 inside, soft border

    # Lesion colour: the style's colours mixed by smooth noise, plus fine texture.
    colours = params["colours"]
    mix = _smooth_noise(rng, style.texture_cells, len(colours)) ** 3  # sharpen: patches, not blur
    mix /= mix.sum(axis=-1, keepdims=True)
    lesion = mix @ colours  # (S, S, 3)
    lesion += style.texture * (rng.random((IMAGE_SIZE, IMAGE_SIZE, 1)) - 0.5)
    rel = r / np.maximum(outline, 1e-3)  # 0 at centre, 1 on the border
    opacity = np.full_like(r, style.opacity)
    if dx == "nv":
        lesion *= (0.85 + 0.15 * rel)[..., None]  # darker centre
    elif dx == "df":
        pale = np.exp(-((rel / 0.45) ** 2))[..., None]  # pale, scar-like centre
        lesion = lesion * (1 - pale) + np.array([0.90, 0.82, 0.76]) * pale
    elif dx == "akiec":
        scale_mask = rng.random((IMAGE_SIZE, IMAGE_SIZE)) < 0.12
        lesion[scale_mask] = lesion[scale_mask] * 0.3 + 0.7 * np.array([0.96, 0.93, 0.90])
    elif dx == "bcc":
        for a, b in params["vessels"]:  # thin red vessels: lines through the lesion
            along = np.cos(a) * x + np.sin(a) * y
            dist = np.abs(np.cos(a) * y - np.sin(a) * x - 0.15 * scale * np.sin(b + along / (0.15 * scale)))
            vessel = (np.exp(-((dist / 0.02) ** 2)) * (rel < 0.9))[..., None]
            lesion = lesion * (1 - vessel) + np.array([0.75, 0.12, 0.15]) * vessel
            opacity = np.maximum(opacity, vessel[..., 0])
    elif dx == "vasc":
        # Lobules replace the outline: a few sharp round blobs, each red or purple.
        inside = np.zeros_like(r)
        for cy, cx in params["lobules"] * scale:
            lobule = np.clip((0.45 * scale - np.hypot(x - cx, y - cy)) / style.edge + 0.5, 0.0, 1.0)
            inside = np.maximum(inside, lobule)

    skin = params["skin"] * (0.92 + 0.16 * _smooth_noise(rng, 3))  # (S, S, 3) uneven skin
    alpha = (inside * opacity)[..., None]
    image = skin * (1 - alpha) + lesion * alpha

    # Hair: a few dark, thin, gently curved strands across the image.
    for _ in range(int(rng.poisson(0.8))):
        angle, offset, bend = rng.uniform(0, np.pi), rng.uniform(-0.9, 0.9), rng.normal(0, 0.4)
        along = np.cos(angle) * _XX + np.sin(angle) * _YY
        dist = np.abs(-np.sin(angle) * _XX + np.cos(angle) * _YY - offset - bend * along**2)
        strand = np.exp(-((dist / 0.02) ** 2))[..., None]
        image = image * (1 - 0.8 * strand) + 0.12 * strand

    # Dermoscope vignette and lighting, then sensor noise.
    vignette = 1.0 - rng.uniform(0.15, 0.35) * np.clip(np.hypot(_XX, _YY) - 0.6, 0.0, None) ** 1.5
    image = image * vignette[..., None] * rng.uniform(0.92, 1.08)
    image += rng.normal(0.0, 0.015, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
