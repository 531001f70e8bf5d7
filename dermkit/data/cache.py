"""On-disk image cache: every image decoded, converted to RGB and resized once per resolution.

The cache is one ``.npy`` file of shape (N, S, S, 3) uint8 that data loaders memory-map: worker
processes share the operating system's page cache instead of each holding a copy. Its name is a
hash of the source files' paths, sizes and modification times, of the resolution and of the
bad-image policy, so a changed file gives a new key and the cache is rebuilt; an unchanged dataset is
never decoded twice. Colour constancy (``data.color_constancy``, :mod:`dermkit.data.color`) is
applied here, to the resized image, and is part of the key too (``none`` keeps the key of caches
written before the option existed).

The policy is part of the key because it changes the contents: only a ``skip_bad`` cache may hold
rows of unreadable images (zeros, ``ok=False``). Such a cache keeps each skip's message beside it
(``.errors.json``), so every later run reports the real reason. A cache whose images all decoded is
the same under either policy and is shared.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermkit.console import console, progress
from dermkit.data.color import apply_color_constancy, check_color_constancy
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


def cache_key(paths: Sequence[Path], size: int, skip_bad: bool = False, color_constancy: str = "none") -> str:
    """Hash of the files' absolute paths, sizes, modification times, the resolution, the policy and
    the colour constancy.

    The strict key is the one of caches written before the policy was part of it, so they are reused.
    """
    color = "" if color_constancy == "none" else f"color={color_constancy}|"
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{'skip_bad|' if skip_bad else ''}{color}".encode())
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:20]


def _decode(path: Path, size: int, color_constancy: str = "none") -> np.ndarray:
    # Corrected after resizing: the illuminant estimate of the S x S image is that of the full one
    # up to resampling, and the correction then costs S^2 instead of the full image's pixels.
    return apply_color_constancy(np.asarray(square_resize(load_rgb(path), size), dtype=np.uint8), color_constancy)


def cache_images(paths: Sequence[Path], size: int, cache_dir: str | Path, skip_bad: bool = False,
                 description: str = "Caching images", color_constancy: str = "none") -> CacheResult:
    """Decode and resize image files into a cached array, or find the one already built.

    Args:
        paths: image files, in the order of the cache rows.
        size: side S of the square cached images.
        cache_dir: root of the cache (images go to ``cache_dir/images``).
        skip_bad: record unreadable files (row of zeros, ``ok=False``) instead of stopping.
        description: progress-bar text.
        color_constancy: one of :data:`dermkit.data.color.COLOR_CONSTANCY`.

    Raises:
        DermkitError: an unreadable image (naming it) when ``skip_bad`` is False, no paths, or an
            unknown colour-constancy method.
    """
    check_color_constancy(color_constancy)
    if not paths:
        raise DermkitError("No images to cache: the dataset is empty.")
    paths = [Path(p) for p in paths]
    folder = Path(cache_dir).expanduser() / "images"
    key = cache_key(paths, size, skip_bad, color_constancy)
    found = _find_cache(folder, key, size, skip_bad) or _find_cache(
        folder, cache_key(paths, size, not skip_bad, color_constancy), size, skip_bad)
    if found is not None:
        return found
    target, ok_path = folder / f"{key}_{size}px.npy", folder / f"{key}_{size}px.ok.npy"
    errors_path = folder / f"{key}_{size}px.errors.json"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}_{size}px.{os.getpid()}.tmp.npy"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
    ok = np.ones(len(paths), dtype=bool)
    errors: list[tuple[int, str]] = []

    def work(i: int) -> None:
        try:
            array[i] = _decode(paths[i], size, color_constancy)
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
        errors_path.write_text(json.dumps({str(i): message for i, message in sorted(errors)}) + "\n")
        os.replace(tmp, target)  # atomic, and last: a cache file implies its ok mask and messages
    finally:
        if tmp.exists():
            tmp.unlink()
    if errors:
        console.print(f"[yellow]Skipped {len(errors)} unreadable image(s) (data.skip_bad=true).[/]")
    return CacheResult(target, ok, sorted(errors))


def _find_cache(folder: Path, key: str, size: int, skip_bad: bool) -> CacheResult | None:
    """The cache stored under ``key`` if a run with this bad-image policy may use it, else None.

    A strict run (``skip_bad=False``) uses only a cache in which every image decoded: one with
    skipped rows (a ``skip_bad`` cache, or one written before the policy was in the key) is passed
    over, so the rebuild stops at the bad file with its real error. Skipped rows come back with the
    messages recorded when they were skipped; a cache without them is passed over too.
    """
    target, ok_path = folder / f"{key}_{size}px.npy", folder / f"{key}_{size}px.ok.npy"
    if not (target.is_file() and ok_path.is_file()):
        return None
    ok = np.load(ok_path)
    if ok.all():
        return CacheResult(target, ok, [])
    errors_path = folder / f"{key}_{size}px.errors.json"
    if not skip_bad or not errors_path.is_file():
        return None
    messages = json.loads(errors_path.read_text())
    bad = [int(i) for i in np.flatnonzero(~ok)]
    if any(str(i) not in messages for i in bad):
        return None
    return CacheResult(target, ok, [(i, messages[str(i)]) for i in bad])


def cache_arrays(arrays: np.ndarray, size: int, cache_dir: str | Path, source_key: str,
                 color_constancy: str = "none") -> CacheResult:
    """Resize in-memory images (N, H, W, 3) uint8 (e.g. MedMNIST) into a cached array.

    Args:
        source_key: identifies the source (e.g. the .npz file's path, size and mtime).
        color_constancy: one of :data:`dermkit.data.color.COLOR_CONSTANCY`.
    """
    from PIL import Image

    check_color_constancy(color_constancy)
    folder = Path(cache_dir).expanduser() / "images"
    color = "" if color_constancy == "none" else f"|color={color_constancy}"
    key = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{source_key}{color}".encode()).hexdigest()[:20]
    target = folder / f"{key}_{size}px.npy"
    ok = np.ones(len(arrays), dtype=bool)
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}_{size}px.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(arrays), size, size, 3))
        for i, image in enumerate(arrays):
            resized = np.asarray(square_resize(Image.fromarray(image).convert("RGB"), size), dtype=np.uint8)
            out[i] = apply_color_constancy(resized, color_constancy)
        out.flush()
        del out
        os.replace(tmp, target)
    return CacheResult(target, ok, [])
