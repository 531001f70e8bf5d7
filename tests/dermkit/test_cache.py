"""The image cache: a hit decodes nothing, a changed file rebuilds it, DataLoader workers share it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import dermkit.data.cache as cache_module
from dermkit.data.cache import cache_images
from dermkit.data.datasets import CachedImageDataset


@pytest.fixture()
def image_files(tmp_path: Path) -> list[Path]:
    """Twelve 24x18 PNGs, image i filled with grey level 20 * i."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(12):
        path = folder / f"img{i:02d}.png"
        Image.new("RGB", (24, 18), (20 * i,) * 3).save(path)
        paths.append(path)
    return paths


def test_rows_follow_input_order(image_files: list[Path], tmp_path: Path) -> None:
    array = cache_images(image_files, 8, tmp_path / "cache").open()
    assert array.shape == (12, 8, 8, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(array[:, 4, 4, 0], [20 * i for i in range(12)])


def test_hit_decodes_nothing(image_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = cache_images(image_files, 8, tmp_path / "cache")

    def fail(path: Path, size: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} on a cache hit")

    monkeypatch.setattr(cache_module, "_decode", fail)
    second = cache_images(image_files, 8, tmp_path / "cache")
    assert second.path == first.path and second.ok.all()
    assert len(list((tmp_path / "cache" / "images").glob("*px.npy"))) == 1


def test_changed_file_rebuilds(image_files: list[Path], tmp_path: Path) -> None:
    first = cache_images(image_files, 8, tmp_path / "cache")
    Image.new("RGB", (24, 18), (255, 0, 0)).save(image_files[3])
    stat = image_files[3].stat()
    os.utime(image_files[3], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # even on coarse clocks
    second = cache_images(image_files, 8, tmp_path / "cache")
    assert second.path != first.path
    np.testing.assert_array_equal(second.open()[3, 4, 4], [255, 0, 0])
    np.testing.assert_array_equal(first.open()[3, 4, 4], [60, 60, 60])


def test_other_resolution_is_another_cache(image_files: list[Path], tmp_path: Path) -> None:
    small = cache_images(image_files, 8, tmp_path / "cache")
    large = cache_images(image_files, 16, tmp_path / "cache")
    assert small.path != large.path and large.open().shape == (12, 16, 16, 3)


class _WhoServed(Dataset):
    """Wraps a CachedImageDataset; each item also says which process served it and from what."""

    def __init__(self, inner: CachedImageDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label = self.inner[i]
        array = self.inner.array
        return {"image": image, "label": label, "pid": os.getpid(), "memmap": isinstance(array, np.memmap),
                "file": str(array.filename)}


def test_workers_share_the_memory_mapped_file(image_files: list[Path], tmp_path: Path) -> None:
    result = cache_images(image_files, 8, tmp_path / "cache")
    labels = np.arange(12) % 3
    dataset = CachedImageDataset(result.path, np.arange(12), labels)
    assert dataset.array is not None  # mapped in the parent ...
    assert len(pickle.dumps(dataset)) < 2048 < result.open().nbytes  # ... but never pickled to workers
    loader = DataLoader(_WhoServed(dataset), batch_size=3, num_workers=2, collate_fn=list)
    items = [item for batch in loader for item in batch]
    assert len({item["pid"] for item in items}) == 2 and os.getpid() not in {item["pid"] for item in items}
    assert all(item["memmap"] and Path(item["file"]) == result.path.resolve() for item in items)
    stacked = torch.stack([item["image"] for item in items])  # (12, 3, 8, 8) uint8
    assert stacked.dtype == torch.uint8 and stacked.shape == (12, 3, 8, 8)
    np.testing.assert_array_equal(stacked.permute(0, 2, 3, 1).numpy(), result.open())
    assert [item["label"] for item in items] == labels.tolist()


def test_transform_receives_rgb_pil_image(image_files: list[Path], tmp_path: Path) -> None:
    result = cache_images(image_files, 8, tmp_path / "cache")
    seen: list[Image.Image] = []
    dataset = CachedImageDataset(result.path, np.array([5, 2]), np.zeros(12, np.int64),
                                 transform=lambda image: seen.append(image) or image.size)
    assert dataset[0] == ((8, 8), 0)
    assert seen[0].mode == "RGB" and seen[0].getpixel((0, 0)) == (100, 100, 100)
