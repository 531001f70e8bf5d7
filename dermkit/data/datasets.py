"""Torch datasets over the image cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class CachedImageDataset(Dataset):
    """Rows of a cached image array with their labels.

    The array is memory-mapped lazily in each process (the dataset pickles without it), so
    DataLoader workers share the file's pages instead of copying the images.

    Args:
        cache_path: ``.npy`` file, (N, S, S, 3) uint8.
        indices: (M,) rows of the cache this dataset serves.
        labels: (N,) int64 label per cache row (-1 = unlabeled).
        transform: applied to the RGB ``PIL.Image``; None returns a (3, S, S) uint8 tensor.
    """

    def __init__(self, cache_path: str | Path, indices: np.ndarray, labels: np.ndarray,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.cache_path = Path(cache_path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.cache_path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        row = int(self.indices[i])
        pixels = np.array(self.array[row])  # (S, S, 3) uint8, copied out of the read-only map
        label = int(self.labels[row])
        if self.transform is None:
            return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), label  # (3, S, S)
        return self.transform(Image.fromarray(pixels)), label
