"""Views of real images from both augmentation paths, side by side: ``python -m ssl.augment_grid``.

For a few HAM10000 training images (the cached, S x S uint8 rows), draws SimCLR views with the
worker path (lightly's ``SimCLRTransform`` on PIL images, ``data.augment_on=workers``) and with
the device path (:mod:`dermkit.augment` on one uint8 batch, ``data.augment_on=device``), with
``ssl.transforms.PretrainAugmentConfig``'s defaults, and writes one PNG: per image, the original, then
the worker views, then the device views. Views are shown without the normalisation.

Example::

    python -m ssl.augment_grid --root ../shared/data/ham10000 --out docs/figures/augment_views.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dermkit.config import DataConfig, default_ham10000_root
from dermkit.console import console, entry_point
from dermkit.data.prepare import prepare_data
from ssl.device_transforms import simclr_device_views
from ssl.transforms import PretrainAugmentConfig, simclr_transform

RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std: views stay in [0, 1] for display


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ssl.augment_grid", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=default_ham10000_root(), help="HAM10000 folder")
    parser.add_argument("--image-size", type=int, default=64, help="cached image side in px")
    parser.add_argument("--images", type=int, default=4, help="training images shown (rows)")
    parser.add_argument("--views", type=int, default=5, help="views per image and path")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice and the augmentations")
    parser.add_argument("--out", default="docs/figures/augment_views.png", help="PNG to write")
    return parser.parse_args(argv)


def draw_views(images: np.ndarray, n_views: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(worker views, device views) of (N, S, S, 3) uint8 images, each (N, V, S, S, 3) uint8."""
    aug = PretrainAugmentConfig()
    torch.manual_seed(seed)
    transform = simclr_transform(aug, image_size, *RAW)
    worker = torch.stack([torch.stack([view for _ in range((n_views + 1) // 2)
                                       for view in transform(Image.fromarray(image))][:n_views])
                          for image in images])  # (N, V, 3, S, S)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
    device = simclr_device_views(aug, image_size, *RAW)
    repeated = batch.repeat_interleave((n_views + 1) // 2, 0)  # (N * ceil(V/2), 3, S, S)
    views = torch.stack(device(repeated), 1).reshape(len(images), -1, 3, image_size, image_size)[:, :n_views]

    def to_uint8(v: torch.Tensor) -> np.ndarray:
        return (v.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()

    return to_uint8(worker), to_uint8(views)


def grid_image(images: np.ndarray, worker: np.ndarray, device: np.ndarray, gap: int = 4) -> Image.Image:
    """One RGB image, a row per input image: original | worker views | device views, under a header line."""
    n, v, size = worker.shape[0], worker.shape[1], worker.shape[2]
    columns = 1 + 2 * v
    width = columns * size + (columns - 1) * gap + 2 * gap  # an extra gap around each block
    height = n * size + (n - 1) * gap
    header = 14
    canvas = np.full((header + height, width, 3), 255, np.uint8)
    for row in range(n):
        top = header + row * (size + gap)
        tiles = [images[row], *worker[row], *device[row]]
        for column, tile in enumerate(tiles):
            left = column * (size + gap) + (gap if column >= 1 else 0) + (gap if column >= 1 + v else 0)
            canvas[top:top + size, left:left + size] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for text, column in (("image", 0), ("workers (lightly, PIL)", 1), ("device (dermkit/augment)", 1 + v)):
        left = column * (size + gap) + (gap if column >= 1 else 0) + (gap if column >= 1 + v else 0)
        draw.text((left + 2, 1), text, fill=(0, 0, 0))
    return image


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = prepare_data(DataConfig(name="ham10000", root=args.root, image_size=args.image_size))
    rows = np.random.default_rng(args.seed).choice(data.indices("train"), size=args.images, replace=False)
    images = np.stack([np.array(data.images[int(r)]) for r in sorted(rows)])  # (N, S, S, 3) uint8
    worker, device = draw_views(images, args.views, args.image_size, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = grid_image(images, worker, device)
    image.save(out, optimize=True)
    console.print(f"Wrote {out}: {args.images} images; original | {args.views} worker views | "
                  f"{args.views} device views ({image.width}x{image.height} px).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
