"""The datasets of a fine-tuning run: real (+ synthetic) training data, validation and test.

Synthetic images enter the training dataset only: :func:`build_datasets` builds validation and
test from the real split alone, and the tests check it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData
from finetune.synthetic import SyntheticImages

Transform = Callable[[Any], Any]


class IndexedDataset(Dataset):
    """A :class:`CachedImageDataset` whose items also carry their cache row.

    Item: ``(image, label, row)``; for real data ``row`` is the record's row in the prepared data
    (so predictions map back to image ids and sort by them).
    """

    def __init__(self, dataset: CachedImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        image, label = self.dataset[i]
        return image, label, int(self.dataset.indices[i])


@dataclass
class FinetuneData:
    """Datasets of one run and what they hold.

    Attributes:
        train: real training rows (+ synthetic images), items ``(image, label, row)``.
        val: real validation rows, sorted by image id.
        test: real test rows, sorted by image id.
        train_labels: (M,) label of every training item, in dataset order (for the sampler).
        counts: ``{"real": {class: n}, "synthetic": {class: n}}`` of the training data.
        synthetic: the synthetic images given (their manifest and generator label fraction), or None.
        epoch_items: items the balanced sampler draws per epoch (0: as many as ``train`` holds);
            ``synth.steps_only`` sets it to the real plus the synthetic images it trains without.
    """

    train: Dataset
    val: IndexedDataset
    test: IndexedDataset
    train_labels: np.ndarray
    counts: dict[str, dict[str, int]]
    synthetic: SyntheticImages | None = None
    epoch_items: int = 0

    def class_totals(self, classes: list[str]) -> list[int]:
        """(C,) training items per class, real plus synthetic."""
        return [self.counts["real"][c] + self.counts["synthetic"][c] for c in classes]


def real_dataset(prepared: PreparedData, rows: np.ndarray, transform: Transform | None) -> IndexedDataset:
    """An :class:`IndexedDataset` over cache rows of the prepared data."""
    return IndexedDataset(CachedImageDataset(prepared.cache_path, rows, prepared.labels, transform))


def build_datasets(prepared: PreparedData, fraction: float, train_transform: Transform | None,
                   eval_transform: Transform, synthetic: SyntheticImages | None = None) -> FinetuneData:
    """Training (real rows of the label fraction + synthetic), validation and test datasets.

    Args:
        prepared: the prepared real data.
        fraction: nested label fraction of the training split.
        train_transform: augmentation for training items (real and synthetic alike); None keeps them
            (3, S, S) uint8 for the device path (``data.augment_on=device``).
        eval_transform: deterministic transform for validation and test.
        synthetic: synthetic images to add to training, or None.
    """
    # Every split must hold images: training, choosing the best epoch and the test metrics need them.
    train_rows = prepared.required_indices("train", fraction)
    real = real_dataset(prepared, train_rows, train_transform)
    train_labels = prepared.labels[train_rows]
    classes = list(prepared.classes)
    synthetic_counts = {c: 0 for c in classes}
    train: Dataset = real
    if synthetic is not None and synthetic.cache_path is not None and len(synthetic.labels):
        fake = IndexedDataset(CachedImageDataset(synthetic.cache_path, np.arange(len(synthetic.labels)),
                                                 synthetic.labels, train_transform))
        train = ConcatDataset([real, fake])
        train_labels = np.concatenate([train_labels, synthetic.labels])
        synthetic_counts = dict(synthetic.counts)
    return FinetuneData(
        train=train,
        val=real_dataset(prepared, prepared.required_indices("val"), eval_transform),
        test=real_dataset(prepared, prepared.required_indices("test"), eval_transform),
        train_labels=train_labels,
        counts={"real": prepared.class_counts(train_rows), "synthetic": synthetic_counts},
        synthetic=synthetic,
    )
