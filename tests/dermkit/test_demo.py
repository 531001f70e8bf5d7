"""The embedded demo dataset: deterministic, imbalanced like HAM10000, readable, classes tell apart."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermkit.data.demo import (
    DEMO_CLASSES,
    HAM10000_COUNTS,
    MIN_PER_CLASS,
    class_counts,
    ensure_demo_dataset,
)
from dermkit.data.readers import read_source
from dermkit.errors import DermkitError


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def metadata(folder: Path) -> list[dict[str, str]]:
    with (folder / "HAM10000_metadata.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def demo_root(demo_cache: Path) -> Path:
    return ensure_demo_dataset(demo_cache)


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = ensure_demo_dataset(tmp_path / "a", n_images=170, seed=5)
    b = ensure_demo_dataset(tmp_path / "b", n_images=170, seed=5)
    c = ensure_demo_dataset(tmp_path / "c", n_images=170, seed=6)
    assert folder_digest(a) == folder_digest(b) != folder_digest(c)
    assert a.name == "demo-v1-n170-seed5"


def test_existing_dataset_is_returned_not_regenerated(demo_root: Path, demo_cache: Path) -> None:
    assert demo_root == demo_cache / "demo-v1"
    before = (demo_root / "HAM10000_metadata.csv").stat().st_mtime_ns
    assert ensure_demo_dataset(demo_cache) == demo_root
    assert (demo_root / "HAM10000_metadata.csv").stat().st_mtime_ns == before
    assert not [p for p in demo_cache.iterdir() if p.name.startswith(".")]  # no temp folder left


@pytest.mark.parametrize("n_images", [168, 500, 1200, 10015])
def test_class_counts_follow_ham10000(n_images: int) -> None:
    counts = class_counts(n_images)
    assert sum(counts.values()) == n_images and min(counts.values()) >= MIN_PER_CLASS
    free = {c: n for c, n in counts.items() if n > MIN_PER_CLASS}
    if not free:  # the smallest dataset: every class at the minimum
        assert n_images == MIN_PER_CLASS * len(DEMO_CLASSES)
        return
    scale = sum(free.values()) / sum(HAM10000_COUNTS[c] for c in free)
    assert all(abs(n - HAM10000_COUNTS[c] * scale) < 1 for c, n in free.items())
    if n_images == 10015:
        assert counts == HAM10000_COUNTS


def test_classes_imbalance_and_lesions(demo_root: Path) -> None:
    rows = metadata(demo_root)
    assert Counter(r["dx"] for r in rows) == class_counts(1200)
    assert {r["dx_type"] for r in rows} == {"demo"}
    per_lesion = Counter(r["lesion_id"] for r in rows)
    multi = sum(1 for n in per_lesion.values() if n > 1)
    assert max(per_lesion.values()) == 3 and 0.15 < multi / len(per_lesion) < 0.35
    for lesion in per_lesion:  # one lesion, one diagnosis
        assert len({r["dx"] for r in rows if r["lesion_id"] == lesion}) == 1


def test_readable_as_ham10000(demo_root: Path) -> None:
    source = read_source("ham10000", demo_root)
    assert source.classes == DEMO_CLASSES and len(source.records) == 1200
    with Image.open(source.records[0].path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert "DEMO DATA" in (demo_root / "README.txt").read_text()


def test_classes_can_be_told_apart(demo_root: Path) -> None:
    """A nearest-centroid classifier on colour statistics of the centre beats chance (1/7) by far."""
    rows = metadata(demo_root)
    features, labels = [], []
    for row in rows:
        pixels = np.asarray(Image.open(demo_root / "images" / f"{row['image_id']}.png"), dtype=np.float32)
        centre, core = pixels[16:48, 16:48].reshape(-1, 3), pixels[28:36, 28:36].reshape(-1, 3)
        features.append(np.concatenate([centre.mean(0), centre.std(0), core.mean(0)]))
        labels.append(DEMO_CLASSES.index(row["dx"]))
    x, y = np.array(features), np.array(labels)
    x = (x - x.mean(0)) / x.std(0)
    train = np.arange(len(y)) % 2 == 0
    centroids = np.stack([x[train & (y == k)].mean(0) for k in range(len(DEMO_CLASSES))])
    predicted = np.argmin(((x[~train, None] - centroids) ** 2).sum(-1), axis=1)
    recall = [np.mean(predicted[y[~train] == k] == k) for k in range(len(DEMO_CLASSES))]
    assert np.mean(recall) > 0.6


def test_too_few_images(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="at least 168 images"):
        ensure_demo_dataset(tmp_path, n_images=100)
