"""synth.evaluate and its set distances: identical sets are closer than unrelated ones."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dermkit.config import DataConfig, parse_config
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError
from dermkit.manifest import ManifestRow, write_header, write_manifest
from synth.evaluate import FLAGS, SyntheticEvaluateConfig, evaluate
from synth.manifest import image_file, write_png
from synth.metrics import frechet_distance, kernel_distance, nearest, precision_recall


def test_identical_sets_are_closer_than_unrelated_ones() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g)
    same = torch.randn(300, 8, generator=g)
    shifted = torch.randn(300, 8, generator=g) * 0.5 + 3.0
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real, same) < frechet_distance(real, shifted)
    assert kernel_distance(real, same)[0] < kernel_distance(real, shifted)[0]
    p_same, r_same = precision_recall(real, same)
    p_far, r_far = precision_recall(real, shifted)
    assert p_same > 0.5 and r_same > 0.5 and p_far < p_same and r_far < r_same
    dist, idx = nearest(same[:5], torch.cat([torch.zeros(1, 8), same[:5]]))
    assert torch.equal(idx, torch.arange(1, 6)) and dist.max() < 1e-4


def write_synthetic(folder: Path, images: np.ndarray, klass: str, split_hash: str) -> None:
    """A folder in synth.generate's format holding the given (N, S, S, 3) images as class ``klass``."""
    rows = []
    for i, image in enumerate(images):
        write_png(folder / image_file(klass, i), image)
        rows.append(ManifestRow(image_file(klass, i), klass, i, 0, 0.0, f"test-{folder.name}", split_hash))
    write_manifest(folder, rows)
    write_header(folder, {"model_hash": f"test-{folder.name}", "split_hash": split_hash, "image_size": images.shape[1]})


@pytest.fixture(scope="module")
def demo16(demo_cache: Path):
    return prepare_data(DataConfig(image_size=16, cache_dir=str(demo_cache)))


def run_eval(folder: Path, cache: Path, *args: str) -> dict:
    argv = ["--synthetic", str(folder), f"data.cache_dir={cache}", "--backbone", "tiny_cnn", "kid_subsets=10", *args]
    cfg = parse_config(SyntheticEvaluateConfig, "t", "t", argv, FLAGS)
    return evaluate(cfg)


def test_copies_of_training_images_rank_closer_than_noise_and_are_flagged(demo16, demo_cache: Path,
                                                                           tmp_path: Path) -> None:
    train = demo16.indices("train")
    mel = train[demo16.labels[train] == demo16.classes.index("mel")]  # all of them: the identical set
    copies_dir, noise_dir = tmp_path / "copies", tmp_path / "noise"
    write_synthetic(copies_dir, np.array(demo16.images[mel]), "mel", demo16.split_hash)
    noise = np.random.default_rng(0).integers(0, 256, size=(len(mel), 16, 16, 3), dtype=np.uint8)
    write_synthetic(noise_dir, noise, "mel", demo16.split_hash)
    copies = run_eval(copies_dir, demo_cache)["classes"]["mel"]
    unrelated = run_eval(noise_dir, demo_cache)["classes"]["mel"]
    assert copies["fd"] < unrelated["fd"] and copies["kid"] < unrelated["kid"]
    assert copies["own_rank_kid"] == 1 and copies["precision"] > unrelated["precision"]
    assert copies["copy_rate"] == 1.0 and unrelated["copy_rate"] == 0.0
    assert copies["near_copies_own_class"] == len(mel) and unrelated["near_copies_own_class"] == 0
    assert copies["colour"]["synthetic"] == copies["colour"]["real_train"]  # the same images
    assert unrelated["colour"]["synthetic"]["mean_rgb"] == pytest.approx([0.5, 0.5, 0.5], abs=0.02)  # uniform noise
    # Held-out real images of the class (validation split) calibrate the ranking: far closer than noise.
    val = demo16.indices("val")
    n_val_mel = int((demo16.labels[val] == demo16.classes.index("mel")).sum())
    for result in (copies, unrelated):
        reference = result["held_out_real"]
        assert reference["n"] == min(n_val_mel, len(mel))
        assert reference["kid"] < unrelated["kid"]
    assert copies["held_out_real"]["own_rank_kid"] == 1
    report = json.loads((copies_dir / "eval" / "metrics.json").read_text())
    assert "random-init tiny_cnn" in report["feature_space"]
    assert (copies_dir / "eval" / "grids" / "mel.png").is_file()
    with open(copies_dir / "eval" / "near_copies.csv", newline="") as fh:
        flagged = list(csv.DictReader(fh))
    assert len(flagged) == len(mel) and {row["nearest_train_class"] for row in flagged} == {"mel"}


def test_a_near_copy_of_another_class_is_not_counted_as_one_of_its_own(demo16, demo_cache: Path,
                                                                       tmp_path: Path) -> None:
    train = demo16.indices("train")
    nevi = train[demo16.labels[train] == demo16.classes.index("nv")][:6]
    write_synthetic(tmp_path / "mislabelled", np.array(demo16.images[nevi]), "mel", demo16.split_hash)
    mel = run_eval(tmp_path / "mislabelled", demo_cache)["classes"]["mel"]
    assert mel["near_copies"] == len(nevi) and mel["near_copies_own_class"] == 0
    with open(tmp_path / "mislabelled" / "eval" / "near_copies.csv", newline="") as fh:
        assert {row["nearest_train_class"] for row in csv.DictReader(fh)} == {"nv"}


def test_held_out_reference_can_be_switched_off(demo16, demo_cache: Path, tmp_path: Path) -> None:
    train = demo16.indices("train")
    vasc = train[demo16.labels[train] == demo16.classes.index("vasc")][:4]
    write_synthetic(tmp_path / "vasc", np.array(demo16.images[vasc]), "vasc", demo16.split_hash)
    assert "held_out_real" in run_eval(tmp_path / "vasc", demo_cache)["classes"]["vasc"]
    assert "held_out_real" not in run_eval(tmp_path / "vasc", demo_cache, "held_out_reference=false")["classes"]["vasc"]


def test_synthetic_images_of_another_split_are_refused(demo16, demo_cache: Path, tmp_path: Path) -> None:
    write_synthetic(tmp_path / "other", np.zeros((3, 16, 16, 3), np.uint8), "mel", "not-this-split")
    with pytest.raises(DermkitError, match=re.escape(f"{tmp_path / 'other' / 'manifest.csv'} was made on another "
                                                     f"split: split hash not-this-split there, {demo16.split_hash}")):
        run_eval(tmp_path / "other", demo_cache)


def test_the_generators_image_size_replaces_another(demo16, demo_cache: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    train = demo16.indices("train")
    vasc = train[demo16.labels[train] == demo16.classes.index("vasc")][:4]
    write_synthetic(tmp_path / "vasc", np.array(demo16.images[vasc]), "vasc", demo16.split_hash)
    report = run_eval(tmp_path / "vasc", demo_cache, "data.image_size=24", "held_out_reference=false")
    assert report["image_size"] == 16
    note = "".join(capsys.readouterr().err.split())  # rich wraps long lines, even inside a path
    assert f"data.image_size=16fromthegeneratorof{tmp_path / 'vasc'}(manifest.json)insteadof24" in note


def test_folder_without_manifest_is_an_error(demo_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="no manifest.json"):
        run_eval(tmp_path, demo_cache)
