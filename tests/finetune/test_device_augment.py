"""finetune.train with data.augment_on=device: uint8 training batches augmented in on_after_batch_transfer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dermkit.augment import ViewAugment
from dermkit.data.prepare import PreparedData
from finetune.train import main
from tests.finetune.helpers import IMAGE_SIZE, write_manifest


def test_device_path_augments_training_batches_only(demo_prepared: PreparedData, demo_cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.dtype, tuple[int, ...]]] = []
    original = ViewAugment.__call__

    def spy(self: ViewAugment, images: torch.Tensor) -> torch.Tensor:
        views = original(self, images)
        seen.append((images.dtype, tuple(views.shape[1:])))
        assert views.dtype == torch.float32 and views.shape == images.shape
        return views

    monkeypatch.setattr(ViewAugment, "__call__", spy)
    manifest = write_manifest(tmp_path / "synth", demo_prepared.split_hash, {"df": 5})
    out = tmp_path / "run"
    status = main(["--out", str(out), "--manifest", str(manifest), "--backbone", "tiny_cnn",
                   f"data.cache_dir={demo_cache}", f"data.image_size={IMAGE_SIZE}", "data.batch_size=32",
                   "data.num_workers=0", "data.augment_on=device", "model.small_stem=true", "trainer.max_epochs=1",
                   "trainer.limit_train_batches=2", "trainer.accelerator=cpu", "synth.max_ratio=1.0"])
    assert status == 0
    assert seen == [(torch.uint8, (3, IMAGE_SIZE, IMAGE_SIZE))] * 2  # the two training batches, not val/test
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
