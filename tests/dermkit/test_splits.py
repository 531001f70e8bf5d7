"""Split invariants on the real HAM10000 metadata, and nested fractions served by PreparedData."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from dermkit.config import DataConfig
from dermkit.data.prepare import prepare_data
from dermkit.data.readers import read_source
from dermkit.data.records import ImageRecord
from dermkit.data.splits import FRACTIONS, SPLITS, SplitTable

pytestmark = pytest.mark.realdata
VAL, TEST = 0.15, 0.15
SHARES = {"train": 1 - VAL - TEST, "val": VAL, "test": TEST}


@pytest.fixture(scope="module")
def records(ham10000_root: Path) -> list[ImageRecord]:
    return read_source("ham10000", ham10000_root).records


@pytest.fixture(scope="module")
def table(records: list[ImageRecord]) -> SplitTable:
    return SplitTable.make(records, VAL, TEST, seed=0)


def test_real_metadata_is_whole(records: list[ImageRecord]) -> None:
    assert len(records) == 10015
    assert len({r.lesion_id for r in records}) == 7470


def test_no_lesion_on_two_sides(records: list[ImageRecord], table: SplitTable) -> None:
    sides: dict[str, set[str]] = defaultdict(set)
    for record, side in zip(records, table.split):
        sides[record.lesion_id].add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert set(table.split) == set(SPLITS)


def test_class_proportions_within_one_image(records: list[ImageRecord], table: SplitTable) -> None:
    per_class = Counter(r.label for r in records)
    per_split = Counter(zip(table.labels, table.split))
    for label, n in per_class.items():
        for side in SPLITS:
            assert abs(per_split[(label, side)] - SHARES[side] * n) <= 1.0, (label, side)


def test_multi_image_lesions_shared_out_in_proportion(records: list[ImageRecord], table: SplitTable) -> None:
    # Val and test must hold the same mix of single- and multi-image lesions as train, or they
    # measure a different population than the data has.
    images_per_lesion = Counter(r.lesion_id for r in records)
    for side in SPLITS:
        rows = [r for r, s in zip(records, table.split) if s == side]
        share = sum(images_per_lesion[r.lesion_id] >= 3 for r in rows) / len(rows)
        overall = sum(images_per_lesion[r.lesion_id] >= 3 for r in records) / len(records)
        assert abs(share - overall) < 0.03, (side, share, overall)


def test_fractions_nested_stratified_and_hold_every_class(table: SplitTable) -> None:
    train_per_class = Counter(lab for lab, side in zip(table.labels, table.split) if side == "train")
    assert all((f is None) == (side != "train") for f, side in zip(table.min_fraction, table.split))
    previous: set[int] = set()
    for fraction in FRACTIONS:
        subset = {i for i, f in enumerate(table.min_fraction) if f is not None and f <= fraction}
        assert previous <= subset
        counts = Counter(table.labels[i] for i in subset)
        assert set(counts) == set(train_per_class)
        for label, n in train_per_class.items():
            assert counts[label] == max(1, round(fraction * n))
        previous = subset


def test_same_seed_same_split_other_seed_different(records: list[ImageRecord], table: SplitTable) -> None:
    assert SplitTable.make(records, VAL, TEST, seed=0).hash == table.hash
    other = SplitTable.make(records, VAL, TEST, seed=1)
    assert other.hash != table.hash
    assert other.split != table.split


def test_prepared_indices_are_nested_and_disjoint(demo_cache: Path) -> None:
    prepared = prepare_data(DataConfig(cache_dir=str(demo_cache)))
    sides = [set(prepared.indices(s).tolist()) for s in SPLITS]
    assert sum(map(len, sides)) == len(prepared.indices("all")) == len(prepared.source.records)
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    previous = np.array([], dtype=np.int64)
    for fraction in FRACTIONS:
        rows = prepared.indices("train", fraction)
        assert set(previous.tolist()) <= set(rows.tolist()) <= sides[0]
        assert all(n >= 1 for n in prepared.class_counts(rows).values())
        previous = rows
