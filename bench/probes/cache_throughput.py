"""Image cache vs decoding JPEGs every epoch: build time and images/s, measured side by side.

    python -m bench.cache_throughput --root ../shared/data/ham10000

1. Builds the ``--size`` px cache of every HAM10000 image, cold, into a temporary cache folder
   (:func:`dermkit.data.cache.cache_images`: decode, RGB, resize once, written to one ``.npy``).
2. Reads ``--epochs`` epochs back through :class:`dermkit.data.datasets.CachedImageDataset` and a
   DataLoader.
3. Reads as many epochs the plain way: a torch Dataset that opens each JPEG with PIL, converts it to
   RGB, resizes it to ``--size`` and makes a uint8 tensor, with the same DataLoader settings.

The figures are those of the last epoch (steady state, workers running); the first epoch's ratio,
which includes starting the workers, is printed too. Both readers yield (B, 3, S, S) uint8
batches, so they do the same work after decoding. The files and the cache are both in the page
cache by then (the JPEGs were just read to build the cache), so the comparison is decoding against
memory-mapped reads, not disk against disk. "Cold" build means an empty cache folder; the JPEGs
may already sit in the operating system's page cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from dermkit.config import default_ham10000_root
from dermkit.console import entry_point, print_table, progress
from dermkit.data.cache import cache_images
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.readers import read_source
from bench.probes.figures import write_figures


class PlainDecodeDataset(Dataset):
    """The reference: decode and resize the image file on every access; item ((3, S, S) uint8, label)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int) -> None:
        self.paths = paths
        self.labels = labels
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as image:
            rgb = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return pil_to_tensor(rgb), int(self.labels[i])


def time_epochs(dataset: Dataset, batch_size: int, num_workers: int, epochs: int, description: str) -> list[float]:
    """Seconds per shuffled pass over ``dataset`` through one DataLoader.

    Workers persist across epochs, as in training: the first epoch includes starting them, later
    epochs are the steady state.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=num_workers > 0)
    times = []
    with progress(transient=True) as bar:
        for epoch in range(epochs):
            task = bar.add_task(f"{description}, epoch {epoch + 1}", total=len(dataset))
            seen = 0
            start = time.perf_counter()
            for images, _ in loader:
                seen += len(images)
                bar.advance(task, len(images))
            times.append(time.perf_counter() - start)
            if seen != len(dataset):
                raise RuntimeError(f"{description}: read {seen} of {len(dataset)} images")
    return times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=default_ham10000_root(), help="HAM10000 folder (default: $DERMKIT_HAM10000 "
                        "or ../shared/data/ham10000)")
    parser.add_argument("--size", type=int, default=64, help="side of the cached square images in pixels")
    parser.add_argument("--batch-size", type=int, default=256, help="DataLoader batch size, both epochs")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes, both epochs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per reader; the first includes starting "
                        "the workers, the last is reported as the steady state")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all), for a quick try")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print build time, images/s of both epochs and their ratio."""
    args = build_parser().parse_args(argv)
    source = read_source("ham10000", Path(args.root))
    records = source.records[: args.limit] if args.limit else source.records
    paths = [r.path for r in records]
    labels = source.label_indices()[: len(records)]
    with tempfile.TemporaryDirectory(prefix="dermkit-bench-cache-") as cache_dir:
        start = time.perf_counter()
        result = cache_images(paths, args.size, cache_dir, description="Building cache")
        build_s = time.perf_counter() - start
        cached = time_epochs(CachedImageDataset(result.path, np.arange(len(paths)), labels),
                             args.batch_size, args.workers, args.epochs, "Cached")
    decode = time_epochs(PlainDecodeDataset(paths, labels, args.size), args.batch_size, args.workers,
                         args.epochs, "Decode")
    n = len(paths)
    cached_s, decode_s = cached[-1], decode[-1]
    figures = {
        "images": n, "size": args.size, "batch_size": args.batch_size, "workers": args.workers,
        "build_s": round(build_s, 2), "build_images_per_s": round(n / build_s, 1),
        "cached_epoch_s": round(cached_s, 3), "cached_images_per_s": round(n / cached_s, 1),
        "decode_epoch_s": round(decode_s, 3), "decode_images_per_s": round(n / decode_s, 1),
        "speedup": round(decode_s / cached_s, 1),
        "first_epoch_images_per_s": {"cached": round(n / cached[0], 1), "decode": round(n / decode[0], 1)},
        "first_epoch_speedup": round(decode[0] / cached[0], 1), "epochs": args.epochs, "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    print_table(f"Image cache vs plain decoding: {n} HAM10000 images at {args.size}px", ["measure", "value"], [
        ["cache build (s, cold)", figures["build_s"]],
        ["cache build (images/s)", figures["build_images_per_s"]],
        ["cached epoch (images/s)", figures["cached_images_per_s"]],
        ["decode epoch (images/s)", figures["decode_images_per_s"]],
        ["cached / decode", figures["speedup"]],
        ["first epoch, incl. worker start: cached / decode", figures["first_epoch_speedup"]],
    ])
    write_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
