"""``finetune.train`` under DDP on CPU (two gloo processes, a real subprocess) and in bf16-mixed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dermkit.config import DataConfig
from dermkit.data.prepare import prepare_data
from tests.ddp_probe import run_probed, tree, writes

RUN_FILES = {"config.yaml", "run.json", "metrics.json", "predictions.csv", "per_class.csv", "checkpoints/last.ckpt",
             "logs/metrics.csv"}


def tiny_args(out: Path, cache: Path, *extra: str) -> list[str]:
    """One epoch of three 8-image batches per process on 16 px demo images, tiny_cnn."""
    return ["--config", "configs/finetune_demo.yaml", "--out", str(out), "--image-size", "16",
            f"data.cache_dir={cache}", "data.batch_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
            *extra]


@pytest.mark.slow
@pytest.mark.parametrize("augment_on", ["device", "resident"])  # resident: each process holds the images
def test_ddp_tests_every_image_once_and_writes_each_file_once(demo_cache: Path, tmp_path: Path,
                                                              augment_on: str) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    run_probed(probe, "finetune.train", tiny_args(out, demo_cache, "trainer.strategy=ddp", "trainer.devices=2",
                                                  f"data.augment_on={augment_on}"), demo_cache, out)
    files = tree(out)
    assert RUN_FILES <= set(files), sorted(RUN_FILES - set(files))
    assert not [f for f in files if "version_" in f or "-v1" in f], files
    assert writes(probe, 1, out) == [], "the second DDP process wrote into the run folder"
    assert {"config.yaml", "run.json", "metrics.json", "predictions.csv"} <= set(writes(probe, 0, out))
    # Each process tests half the split (the sampler pads it); the report counts each image once.
    test_ids = prepare_data(DataConfig(cache_dir=str(demo_cache), image_size=16)).indices("test")
    with open(out / "predictions.csv", newline="") as fh:
        ids = [row["image_id"] for row in csv.DictReader(fh)]
    assert len(ids) == len(set(ids)) == len(test_ids)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(c["support"] for c in metrics["per_class"].values()) == len(test_ids)


@pytest.mark.slow
def test_bf16_mixed_on_cpu(demo_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_probed(tmp_path / "probe", "finetune.train", tiny_args(out, demo_cache, "trainer.precision=bf16-mixed"),
               demo_cache, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert "precision: bf16-mixed" in (out / "config.yaml").read_text()
