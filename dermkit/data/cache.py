"""On-disk image cache: every image decoded, converted to RGB and resized once per resolution.

The cache is one ``.npy`` file of shape (N, S, S, 3) uint8 that data loaders memory-map: worker
processes share the operating system's page cache instead of each holding a copy. Its name is a
hash of the source files' paths, sizes and modification times and of the resolution, so a changed
file gives a new key and the cache is rebuilt; an unchanged dataset is never decoded twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermkit.console import console, progress
from dermkit.data.images import load_rgb, square_resize
from dermkit.errors import DermkitError

CACHE_VERSION = "1"  # bump when decoding or resizing changes, so old caches are not reused


@dataclass
class CacheResult:
    """A built or found cache.

    Attributes:
        path: the ``.npy`` file, (N, S, S, 3) uint8, row i = input i.
        ok: (N,) bool; False where the image could not be read (row is zeros; only with skip_bad).
        errors: (input index, message) for each unreadable image.
    """

    path: Path
    ok: np.ndarray
    errors: list[tuple[int, str]]

    def open(self) -> np.ndarray:
        """Memory-map the cached array read-only."""
        return np.load(self.path, mmap_mode="r")


def cache_key(paths: Sequence[Path], size: int) -> str:
    """Hash of the files' absolute paths, sizes, modification times and the resolution."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size}|".encode())
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:20]


def _decode(path: Path, size: int) -> np.ndarray:
    return np.asarray(square_resize(load_rgb(path), size), dtype=np.uint8)


def cache_images(paths: Sequence[Path], size: int, cache_dir: str | Path, skip_bad: bool = False,
                 description: str = "Caching images") -> CacheResult:
    """Decode and resize image files into a cached array, or find the one already built.

    Args:
        paths: image files, in the order of the cache rows.
        size: side S of the square cached images.
        cache_dir: root of the cache (images go to ``cache_dir/images``).
        skip_bad: record unreadable files (row of zeros, ``ok=False``) instead of stopping.
        description: progress-bar text.

    Raises:
        DermkitError: an unreadable image (naming it) when ``skip_bad`` is False, or no paths.
    """
    if not paths:
        raise DermkitError("No images to cache: the dataset is empty.")
    paths = [Path(p) for p in paths]
    folder = Path(cache_dir).expanduser() / "images"
    key = cache_key(paths, size)
    target, ok_path = folder / f"{key}_{size}px.npy", folder / f"{key}_{size}px.ok.npy"
    if target.is_file() and ok_path.is_file():
        ok = np.load(ok_path)
        return CacheResult(target, ok, [(int(i), "unreadable (cached)") for i in np.flatnonzero(~ok)])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}_{size}px.{os.getpid()}.tmp.npy"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
    ok = np.ones(len(paths), dtype=bool)
    errors: list[tuple[int, str]] = []

    def work(i: int) -> None:
        try:
            array[i] = _decode(paths[i], size)
        except DermkitError as err:
            if not skip_bad:
                raise
            ok[i] = False
            errors.append((i, str(err)))

    try:
        # Pillow releases the GIL while decoding and resizing, so threads use every core.
        with progress() as bar, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            task = bar.add_task(f"{description} ({size}px)", total=len(paths))
            for _ in pool.map(work, range(len(paths)), chunksize=64):
                bar.advance(task)
        array.flush()
        del array
        np.save(ok_path, ok)
        os.replace(tmp, target)  # atomic: a reader never sees a half-written cache
    finally:
        if tmp.exists():
            tmp.unlink()
    if errors:
        console.print(f"[yellow]Skipped {len(errors)} unreadable image(s) (data.skip_bad=true).[/]")
    return CacheResult(target, ok, sorted(errors))


def cache_arrays(arrays: np.ndarray, size: int, cache_dir: str | Path, source_key: str) -> CacheResult:
    """Resize in-memory images (N, H, W, 3) uint8 (e.g. MedMNIST) into a cached array.

    Args:
        source_key: identifies the source (e.g. the .npz file's path, size and mtime).
    """
    from PIL import Image

    folder = Path(cache_dir).expanduser() / "images"
    key = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{source_key}".encode()).hexdigest()[:20]
    target = folder / f"{key}_{size}px.npy"
    ok = np.ones(len(arrays), dtype=bool)
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}_{size}px.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(arrays), size, size, 3))
        for i, image in enumerate(arrays):
            out[i] = np.asarray(square_resize(Image.fromarray(image).convert("RGB"), size))
        out.flush()
        del out
        os.replace(tmp, target)
    return CacheResult(target, ok, [])
