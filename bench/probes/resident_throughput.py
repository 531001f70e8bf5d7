"""Resident images against the device path, side by side in one run: images/s of drawing and augmenting batches.

    python -m bench.resident_throughput --data ham10000 --image-size 64 --rounds 3

Both paths end where training starts, with a batch of augmented, normalised views on the device:

* ``device`` (``data.augment_on=device``, today's default): a ``DataLoader`` with ``--workers``
  processes over :class:`dermkit.data.datasets.CachedImageDataset` (the memory-mapped cache) ships
  (B, 3, S, S) uint8 batches, copied to the device, then augmented there;
* ``resident`` (``data.augment_on=resident``): the cache held on the device
  (:class:`dermkit.data.resident.ResidentImages`), each batch gathered by index
  (:func:`dermkit.data.resident.resident_loader`, no workers), then augmented the same way.

The augmentation is SimCLR's two views with ``ssl.pretrain``'s default parameters (crop 0.2-1, flips,
rotation with probability 0.5, colour jitter 0.8, greyscale 0.1, no blur at 64 px and below), written out
here because benchmarks do not import the stages. The rounds alternate the paths (device, resident,
device, ...) so that a shared machine's load changes hit both alike; each round is one shuffled pass
over ``--images`` training images, after one untimed warm-up batch per path (worker start-up, first
touch of the cache). The figure is the median over rounds of resident's images/s over the device
path's in the same round (neighbours in time, so a shared machine's changing load cancels out), with
the ratio of the two paths' median images/s beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from dermkit.augment import MultiViewAugment, ViewSpec
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from dermkit.config import DataConfig, default_ham10000_root
from dermkit.console import console, entry_point, print_table
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import prepare_data
from dermkit.data.resident import CachedArraySource, ResidentDataset, ResidentImages, resident_loader
from dermkit.errors import DermkitError
from bench.probes.figures import write_figures

PATHS = ("device", "resident")


def simclr_views(image_size: int) -> MultiViewAugment:
    """Two views with ``ssl.transforms.AugmentConfig``'s defaults (blur off at 64 px and below)."""
    blur = 0.5 if image_size > 64 else 0.0
    view = ViewSpec(size=image_size, crop_scale=(0.2, 1.0), hflip_prob=0.5, vflip_prob=0.5, rotation_prob=0.5,
                    rotation_degrees=180.0, cj_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.3, hue=0.02,
                    gray_prob=0.1, blur_prob=blur, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return MultiViewAugment([view, view])


def time_pass(loader: DataLoader, augment: Callable[[torch.Tensor], list[torch.Tensor]] | None,
              device: torch.device) -> tuple[float, int]:
    """Seconds of one pass (batches drawn, moved to ``device``, augmented unless ``augment`` is None) and
    the images it held."""
    images = 0
    start = time.perf_counter()
    for batch, _ in loader:
        batch = batch.to(device, non_blocking=True)
        if augment is not None:
            augment(batch)
        images += batch.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, images


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.resident_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="ham10000", choices=("ham10000", "demo"), help="dataset")
    parser.add_argument("--root", default="", help="HAM10000 folder (default: $DERMKIT_HAM10000 or "
                        "../shared/data/ham10000)")
    parser.add_argument("--image-size", type=int, default=64, help="cached image side in px")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of the device path (data.num_workers's "
                        "default)")
    parser.add_argument("--images", type=int, default=2048, help="training images per round (0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per path, alternating")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where batches are augmented")
    parser.add_argument("--no-augment", action="store_true", help="time drawing the batches only (the data path "
                        "without the augmentation both paths share)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Time both paths round by round and print images/s and their ratio."""
    args = build_parser().parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1 or args.workers < 0 or args.images < 0:
        raise DermkitError("--rounds and --batch-size must be >= 1, --workers and --images >= 0.")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise DermkitError("--device cuda: torch sees no CUDA device here; use --device cpu.")
    device = torch.device(args.device)
    root = (args.root or default_ham10000_root()) if args.data == "ham10000" else ""
    data = prepare_data(DataConfig(name=args.data, root=root, image_size=args.image_size))
    rows = data.indices("train")
    rows = np.sort(np.random.default_rng(0).choice(rows, size=args.images, replace=False)) \
        if 0 < args.images < len(rows) else rows
    augment = None if args.no_augment else simclr_views(args.image_size)
    store = ResidentImages.load([CachedArraySource(data.cache_path, data.labels)])
    store.to(device)
    generator = torch.Generator().manual_seed(0)
    loaders = {
        "device": DataLoader(CachedImageDataset(data.cache_path, rows, data.labels), batch_size=args.batch_size,
                             shuffle=True, generator=generator, num_workers=args.workers,
                             persistent_workers=args.workers > 0, pin_memory=device.type == "cuda"),
        "resident": resident_loader(ResidentDataset(store, store.rows(0, rows)), args.batch_size, shuffle=True,
                                    generator=generator),
    }
    for path in PATHS:  # untimed: worker start-up, first touch of the cache's pages
        batch, _ = next(iter(loaders[path]))
        if augment is not None:
            augment(batch.to(device))
    speeds: dict[str, list[float]] = {path: [] for path in PATHS}
    for round_index in range(args.rounds):
        for path in PATHS:
            seconds, images = time_pass(loaders[path], augment, device)
            speeds[path].append(images / seconds)
            console.print(f"round {round_index + 1}/{args.rounds}, {path}: {images / seconds:,.0f} images/s")
    median = {path: statistics.median(values) for path, values in speeds.items()}
    paired = statistics.median(r / d for r, d in zip(speeds["resident"], speeds["device"]))
    figures = {"data": args.data, "image_size": args.image_size, "batch_size": args.batch_size,
               "device_path_workers": args.workers, "images_per_round": len(rows), "rounds": args.rounds,
               "device": args.device, "augmented": augment is not None, "torch_threads": torch.get_num_threads(),
               "images_per_second": {p: [round(v, 1) for v in speeds[p]] for p in PATHS},
               "median_images_per_second": {p: round(v, 1) for p, v in median.items()},
               "resident_over_device_paired": round(paired, 3),
               "resident_over_device": round(median["resident"] / median["device"], 3),
               "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    what = "SimCLR views of" if augment is not None else "batches (no augmentation) of"
    print_table(f"{what} {len(rows)} {args.data} images at {args.image_size} px on {args.device}",
                ["path", "images/s (median)", "rounds"],
                [[p, f"{median[p]:,.0f}", ", ".join(f"{v:,.0f}" for v in speeds[p])] for p in PATHS]
                + [["resident / device, same round (median)", f"{paired:.3f}", ""],
                   ["resident / device, of the medians", f"{figures['resident_over_device']:.3f}", ""]])
    write_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
