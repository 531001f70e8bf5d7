"""bench.finetune_baseline on the demo data: both loops train, test and report their speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.finetune_baseline import main, plain_transforms


@pytest.mark.slow
def test_plain_loop_and_finetune_train_side_by_side(demo_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    out = tmp_path / "baseline"
    assert main(["--data", "demo", "--backbone", "tiny_cnn", "--image-size", "32", "--batch-size", "8",
                 "--workers", "0", "--epochs", "1", "--max-batches", "9", "--out", str(out),
                 f"data.cache_dir={demo_cache}"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["role"] for r in results] == ["plain", "ours"]
    for result in results:
        assert 0.0 <= result["test_balanced_accuracy"] <= 1.0
        assert result["train_images_per_second"] > 0  # 9 steps: 3 timed after the 5-step warm-up
        assert result["cpu_seconds"] > 0
    assert "finetune.train" in results[1]["command"] and "--loss ce" in results[1]["command"]
    assert (out / "results.md").read_text().count("|") > 10


def test_plain_transforms_keep_size_and_normalise() -> None:
    from PIL import Image

    train, evaluate = plain_transforms()
    image = Image.new("RGB", (32, 32), (200, 120, 100))
    assert train(image).shape == evaluate(image).shape == (3, 32, 32)
    assert torch.allclose(evaluate(image)[:, 0, 0], torch.tensor([(200 / 255 - 0.485) / 0.229,
                                                                  (120 / 255 - 0.456) / 0.224,
                                                                  (100 / 255 - 0.406) / 0.225]), atol=1e-4)
