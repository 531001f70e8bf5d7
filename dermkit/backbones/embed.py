"""Features of images under a frozen backbone: the one embedding loop every stage uses.

:func:`embed` runs a backbone over batches of ready-to-use images (a ``DataLoader`` of
normalised tensors with labels, as ``ssl.pretrain``'s monitor and ``ssl.evaluate`` build them).
:class:`ImageArrayBatches` turns an (N, S, S, 3) uint8 array (an image cache, synthetic images)
into such batches for a backbone card's input size and normalisation, so ``synth.evaluate`` goes
through the same loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermkit.console import progress


@torch.no_grad()
def embed(backbone: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]], device: torch.device | str = "cpu",
          description: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of every image of ``batches``.

    Args:
        backbone: (B, 3, S, S) float -> (B, D); put in eval mode for the pass and restored to its
            previous mode afterwards.
        batches: yields ``(images (B, 3, S, S) float, labels (B,))`` (a ``DataLoader`` or
            :class:`ImageArrayBatches`); its ``len()``, when it has one, sizes the progress bar.
        device: where the backbone lives; each batch of images is moved there.
        description: show a transient progress bar with this text (None: no bar).

    Returns:
        ``(features (N, D) float32 on the CPU, labels (N,) int64)``; for no images, ``(0, D)``
        with D the backbone's ``feature_dim`` (0 when it has none) and ``(0,)``.
    """
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    try:
        # No bar inside a Lightning fit: rich allows one live display, and the RichProgressBar is one.
        with progress(transient=True) if description else contextlib.nullcontext() as bar:
            task = bar.add_task(description, total=total) if bar else None
            for images, targets in batches:
                features.append(backbone(images.to(device)).float().cpu())
                labels.append(torch.as_tensor(targets).long())
                if bar:
                    bar.advance(task)
    finally:
        backbone.train(was_training)
    if not features:
        return torch.zeros(0, int(getattr(backbone, "feature_dim", 0))), torch.zeros(0, dtype=torch.long)
    return torch.cat(features), torch.cat(labels)


class ImageArrayBatches:
    """Batches of an (N, S, S, 3) uint8 image array as a backbone takes them (labels all -1).

    Each batch is scaled to [0, 1], resized to ``input_size`` when S differs (bilinear,
    antialiased) and normalised with ``mean`` / ``std``: the input a backbone card describes.

    Args:
        images: (N, S, S, 3) uint8, e.g. a memory-mapped image cache (read one batch at a time).
        mean: per-channel normalisation mean (3,).
        std: per-channel normalisation standard deviation (3,).
        input_size: side the backbone expects.
        batch_size: images per batch.
    """

    def __init__(self, images: np.ndarray, mean: Sequence[float], std: Sequence[float], input_size: int,
                 batch_size: int = 128) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.mean = torch.tensor(tuple(mean)).view(1, 3, 1, 1)
        self.std = torch.tensor(tuple(std)).view(1, 3, 1, 1)
        self.input_size = int(input_size)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.images), self.batch_size):
            # np.array copies: a memory-mapped cache is read-only, and torch wants writable memory.
            x = torch.from_numpy(np.array(self.images[start:start + self.batch_size])).permute(0, 3, 1, 2)
            x = x.float() / 255.0  # (B, 3, S, S)
            if x.shape[-1] != self.input_size:
                x = F.interpolate(x, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
            yield (x - self.mean) / self.std, torch.full((len(x),), -1, dtype=torch.long)
