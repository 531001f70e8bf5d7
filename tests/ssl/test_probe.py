"""kNN and linear probe on toy features, and the evaluation command on the demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dermkit.backbones import BackboneCard, build_backbone, save_backbone
from dermkit.metrics import balanced_accuracy
from ssl.evaluate import main as evaluate_main
from ssl.probe import knn_classify, linear_probe


def _blobs(n_per_class: int, num_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable clusters: class c around a random unit direction, imbalanced 1:2:...:C."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=generator), dim=1) * 5
    noise = torch.Generator().manual_seed(seed)
    features, labels = [], []
    for c in range(num_classes):
        n = n_per_class * (c + 1)
        features.append(centres[c] + torch.randn(n, dim, generator=noise))
        labels.append(torch.full((n,), c))
    return torch.cat(features), torch.cat(labels)


@pytest.mark.parametrize("classifier", ["knn", "linear"])
def test_probes_separate_toy_features(classifier: str) -> None:
    train_x, train_y = _blobs(20, 4, 16, seed=1)
    test_x, test_y = _blobs(10, 4, 16, seed=2)
    if classifier == "knn":
        preds = knn_classify(train_x, train_y, test_x, 4, k=10)
    else:
        preds = linear_probe(train_x, train_y, test_x, 4, epochs=100)
    assert preds.shape == test_y.shape
    assert balanced_accuracy(preds, test_y, 4) > 0.95


def test_probes_fail_on_shuffled_labels() -> None:
    # The same probes must not find structure that is not there (guards against label leaks).
    train_x, train_y = _blobs(20, 4, 16, seed=1)
    test_x, test_y = _blobs(10, 4, 16, seed=2)
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(0))]
    assert balanced_accuracy(knn_classify(train_x, shuffled, test_x, 4, k=10), test_y, 4) < 0.6


def test_evaluate_random_backbone_on_demo(demo_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code = evaluate_main(["--backbone", "tiny_cnn", "--data", "demo", "--image-size", "32",
                          "--out", str(out), f"data.cache_dir={demo_cache}", "probe_epochs=20"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["architecture"] == "tiny_cnn" and metrics["split"] == "val"
    assert metrics["weights"] == "random"  # the same word as the --weights flag
    for name in ("knn", "linear"):
        assert 0.0 <= metrics[name]["balanced_accuracy"] <= 1.0
        assert set(metrics[name]["recall"]) == set(metrics["data"]["classes"])
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()


def test_a_backbone_file_sets_the_image_size(demo_cache: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_backbone(tmp_path / "backbone.safetensors", build_backbone("tiny_cnn", True, 16),
                            BackboneCard(architecture="tiny_cnn", input_size=16, small_stem=True, method="simclr"))
    out = tmp_path / "eval"
    assert evaluate_main(["--weights", str(weights), "--data", "demo", "--image-size", "24", "--out", str(out),
                          f"data.cache_dir={demo_cache}", "probe_epochs=5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["image_size"] == 16 and metrics["weights"] == str(weights)
    squeeze = "".join  # rich wraps long lines, even inside a path: compare without whitespace
    assert squeeze(f"data.image_size=16 from the card of {weights} instead of 24".split()) in squeeze(
        capsys.readouterr().err.split())
