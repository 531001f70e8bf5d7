"""The datasets of a fine-tuning run: real (+ synthetic) training data, validation and test.

Synthetic images enter the training dataset only: :func:`build_datasets` builds validation and
test from the real split alone, and the tests check it. With ``data.augment_on=resident`` the same
datasets are :class:`dermkit.data.resident.ResidentDataset` views of the images held on the device
(the real cache, then the synthetic one: :func:`resident_sources`), items and order unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData
from dermkit.data.resident import CachedArraySource, ResidentDataset, ResidentImages
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
        resident: the images the datasets draw from with ``data.augment_on=resident`` (None otherwise).
    """

    train: Dataset
    val: IndexedDataset | ResidentDataset
    test: IndexedDataset | ResidentDataset
    train_labels: np.ndarray
    counts: dict[str, dict[str, int]]
    synthetic: SyntheticImages | None = None
    epoch_items: int = 0
    resident: ResidentImages | None = None

    def class_totals(self, classes: list[str]) -> list[int]:
        """(C,) training items per class, real plus synthetic."""
        return [self.counts["real"][c] + self.counts["synthetic"][c] for c in classes]


def real_dataset(prepared: PreparedData, rows: np.ndarray, transform: Transform | None,
                 resident: ResidentImages | None = None) -> IndexedDataset | ResidentDataset:
    """An :class:`IndexedDataset` over cache rows of the prepared data (with ``resident``: the same rows of
    the images held on the device, ids = the rows)."""
    if resident is not None:
        return ResidentDataset(resident, resident.rows(0, rows), ids=rows)
    return IndexedDataset(CachedImageDataset(prepared.cache_path, rows, prepared.labels, transform))


def trained_synthetic(synthetic: SyntheticImages | None) -> tuple[Path, np.ndarray] | None:
    """``(cache, labels)`` of the synthetic images to train on (a cache with at least one row), else None."""
    if synthetic is None or synthetic.cache_path is None or not len(synthetic.labels):
        return None
    return Path(synthetic.cache_path), synthetic.labels


def resident_sources(prepared: PreparedData, synthetic: SyntheticImages | None = None) -> list[CachedArraySource]:
    """The caches a resident run holds: the prepared data's, then the synthetic images' (when trained on)."""
    sources = [CachedArraySource(prepared.cache_path, prepared.labels)]
    fake = trained_synthetic(synthetic)
    if fake is not None:
        sources.append(CachedArraySource(*fake))
    return sources


def build_datasets(prepared: PreparedData, fraction: float, train_transform: Transform | None,
                   eval_transform: Transform, synthetic: SyntheticImages | None = None,
                   resident: ResidentImages | None = None) -> FinetuneData:
    """Training (real rows of the label fraction + synthetic), validation and test datasets.

    Args:
        prepared: the prepared real data.
        fraction: nested label fraction of the training split.
        train_transform: augmentation for training items (real and synthetic alike); None keeps them
            (3, S, S) uint8 for the device path (``data.augment_on=device``).
        eval_transform: deterministic transform for validation and test.
        synthetic: synthetic images to add to training, or None.
        resident: ``data.augment_on=resident``: the images of :func:`resident_sources` (with ``synthetic``)
            held on the device; every dataset draws from it, uint8, and the transforms are not used.
    """
    # Every split must hold images: training, choosing the best epoch and the test metrics need them.
    train_rows = prepared.required_indices("train", fraction)
    real = real_dataset(prepared, train_rows, train_transform, resident)
    train_labels = prepared.labels[train_rows]
    classes = list(prepared.classes)
    synthetic_counts = {c: 0 for c in classes}
    train: Dataset = real
    fake = trained_synthetic(synthetic)
    if synthetic is not None and fake is not None:
        fake_cache, fake_labels = fake
        fake_rows = np.arange(len(fake_labels))
        if resident is not None:
            if len(resident.offsets) < 2:
                raise ValueError("the resident images lack the synthetic cache: build them from resident_sources()")
            # One dataset over real and synthetic rows; a synthetic item's id is its row in its own cache.
            train = ResidentDataset(resident, np.concatenate([resident.rows(0, train_rows), resident.rows(1, fake_rows)]),
                                    ids=np.concatenate([train_rows, fake_rows]))
        else:
            train = ConcatDataset([real, IndexedDataset(CachedImageDataset(fake_cache, fake_rows, fake_labels,
                                                                           train_transform))])
        train_labels = np.concatenate([train_labels, fake_labels])
        synthetic_counts = dict(synthetic.counts)
    return FinetuneData(
        train=train,
        val=real_dataset(prepared, prepared.required_indices("val"), eval_transform, resident),
        test=real_dataset(prepared, prepared.required_indices("test"), eval_transform, resident),
        train_labels=train_labels,
        counts={"real": prepared.class_counts(train_rows), "synthetic": synthetic_counts},
        synthetic=synthetic,
        resident=resident,
    )
