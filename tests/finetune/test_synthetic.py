"""Synthetic images: split-hash check, per-class caps, never in validation or test; the steps-only control."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dermkit.config import DataConfig
from dermkit.data.prepare import PreparedData
from dermkit.errors import DermkitError
from finetune.backbone import resolve_backbone
from finetune.data import build_datasets
from finetune.synthetic import load_synthetic
from tests.finetune.helpers import IMAGE_SIZE, is_magenta, write_manifest


def _load(prepared: PreparedData, manifest: Path, cache: Path, fraction: float = 1.0, **kwargs):
    real = prepared.class_counts(prepared.indices("train", fraction))
    return load_synthetic(manifest, prepared.classes, real, prepared.split_hash, IMAGE_SIZE, cache, fraction=fraction,
                          dataset_files=[r.path for r in prepared.source.records], **kwargs)


def test_synthetic_images_only_reach_training(demo_prepared: PreparedData, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "synth", demo_prepared.split_hash, {"df": 6, "vasc": 4})
    synthetic = _load(demo_prepared, manifest, tmp_path / "cache", max_ratio=10.0)
    data = build_datasets(demo_prepared, 1.0, None, None, synthetic)  # no transforms: raw uint8 pixels
    assert data.counts["synthetic"] == {c: {"df": 6, "vasc": 4}.get(c, 0) for c in demo_prepared.classes}
    n_real = len(demo_prepared.indices("train"))
    assert len(data.train) == n_real + 10 and len(data.train_labels) == n_real + 10
    train_magenta = [is_magenta(data.train[i][0].numpy()) for i in range(len(data.train))]
    assert sum(train_magenta) == 10 and all(train_magenta[n_real:])
    for split in (data.val, data.test):
        assert not any(is_magenta(split[i][0].numpy()) for i in range(len(split)))
        assert split.dataset.cache_path == demo_prepared.cache_path
    rows = np.concatenate([data.val.dataset.indices, data.test.dataset.indices])
    assert set(rows.tolist()).isdisjoint(demo_prepared.indices("train").tolist())


def test_max_ratio_and_class_selection(demo_prepared: PreparedData, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "synth", demo_prepared.split_hash, {"df": 40, "mel": 5}, label_fraction=0.1)
    real = demo_prepared.class_counts(demo_prepared.indices("train", 0.1))
    capped = _load(demo_prepared, manifest, tmp_path / "cache", fraction=0.1, max_ratio=2.0)
    assert capped.counts["df"] == min(40, 2 * real["df"]) and capped.counts["mel"] == min(5, 2 * real["mel"])
    only_df = _load(demo_prepared, manifest.parent, tmp_path / "cache", max_ratio=1.0, only_classes=["dermatofibroma"])
    assert only_df.counts["mel"] == 0 and only_df.counts["df"] > 0
    assert (only_df.labels == demo_prepared.classes.index("df")).all()


def test_split_hash_mismatch_is_refused(demo_prepared: PreparedData, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "synth", "0123456789abcdef", {"df": 2})
    with pytest.raises(DermkitError, match=re.escape(f"{manifest} was made on another split: split hash "
                                                     f"0123456789abcdef there, {demo_prepared.split_hash} in this run")):
        _load(demo_prepared, manifest, tmp_path / "cache")
    # Rows of this split, but a header naming another one: refused as well.
    manifest = write_manifest(tmp_path / "header", demo_prepared.split_hash, {"df": 2}, label_fraction=1.0)
    (manifest.parent / "manifest.json").write_text('{"split_hash": "fedcba9876543210"}')
    with pytest.raises(DermkitError, match=f"split hash fedcba9876543210 there, {demo_prepared.split_hash} in"):
        _load(demo_prepared, manifest, tmp_path / "cache")


def test_bad_manifests(demo_prepared: PreparedData, tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="no manifest.csv"):
        _load(demo_prepared, tmp_path / "nowhere", tmp_path / "cache")
    manifest = write_manifest(tmp_path / "scc", demo_prepared.split_hash, {"scc": 2})
    with pytest.raises(DermkitError, match="scc.*does not have"):
        _load(demo_prepared, manifest, tmp_path / "cache")
    manifest = write_manifest(tmp_path / "df", demo_prepared.split_hash, {"df": 2})
    with pytest.raises(DermkitError, match="synth.classes asks for mel"):
        _load(demo_prepared, manifest, tmp_path / "cache", only_classes=["mel"])
    (manifest.parent / "df" / "df_000001.png").unlink()
    with pytest.raises(DermkitError, match="do not exist"):
        _load(demo_prepared, manifest, tmp_path / "cache", max_ratio=5.0)


def _steps_only_pair(prepared: PreparedData, cache: Path, manifest: Path) -> tuple[Any, Any]:
    """(synthetic run, its steps-only control): the data and training loader of each, batch 4."""
    from finetune.config import ClassifierModelConfig, FinetuneConfig, LossConfig, SynthConfig
    from finetune.train import build_data, check_config, make_loaders, run_record

    data_cfg = DataConfig(name="demo", image_size=IMAGE_SIZE, cache_dir=str(cache), batch_size=4, num_workers=0)
    model = ClassifierModelConfig(backbone="tiny_cnn", small_stem=True)
    _, spec = resolve_backbone(model, IMAGE_SIZE)
    runs = []
    for steps_only in (False, True):
        cfg = FinetuneConfig(data=data_cfg, model=model, sampler="balanced" if steps_only else "shuffle",
                             loss=LossConfig(weighting="none" if steps_only else "effective"),
                             synth=SynthConfig(manifest=str(manifest), max_ratio=10.0, steps_only=steps_only))
        check_config(cfg)
        data = build_data(cfg, prepared, spec)
        runs.append((data, make_loaders(cfg, data)[0], run_record(cfg, prepared, data, spec)))
    return runs[0], runs[1]


def test_steps_only_trains_on_real_images_for_as_many_steps(demo_prepared: PreparedData, demo_cache: Path,
                                                           tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "synth", demo_prepared.split_hash, {"df": 6, "vasc": 4})
    (synthetic, synthetic_loader, _), (control, control_loader, record) = _steps_only_pair(demo_prepared, demo_cache,
                                                                                           manifest)
    n_real = len(demo_prepared.indices("train"))
    assert len(synthetic.train) == n_real + 10
    assert len(control.train) == n_real and control.epoch_items == n_real + 10
    assert len(control_loader) == len(synthetic_loader) == -(-(n_real + 10) // 4)  # as many optimizer steps
    drawn = list(control_loader.sampler)
    assert len(drawn) == n_real + 10 and max(drawn) < n_real  # every draw a real image
    assert not any(is_magenta(control.train[i][0].numpy()) for i in set(drawn))
    assert set(control.counts["synthetic"].values()) == {0}  # what it trained on
    assert record["synthetic"]["steps_only"] and record["synthetic"]["epoch_items"] == n_real + 10
    assert record["synthetic"]["stood_in_for"] == synthetic.counts["synthetic"]


@pytest.mark.parametrize("overrides", [["synth.manifest=somewhere/manifest.csv"],  # the shuffled sampler
                                       ["sampler=balanced", "loss.weighting=none"]])  # no manifest
def test_steps_only_needs_a_manifest_and_the_balanced_sampler(overrides: list[str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from finetune.train import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "synth.steps_only=true", *overrides])
    err = capsys.readouterr().err
    assert "synth.steps_only=true" in err and "sampler=balanced" in err and "synth.manifest=" in err
    assert not (tmp_path / "run.json").exists()
