"""A two-step CPU fine-tune on the demo data writes every output, with the agreed names and keys."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dermkit.backbones import BackboneCard, build_backbone, save_backbone
from dermkit.data.prepare import PreparedData
from finetune.backbone import BackboneSpec
from finetune.config import run_folder
from finetune.train import check_backbone_card, main
from tests.finetune.helpers import IMAGE_SIZE

PER_CLASS_KEYS = {"recall", "precision", "f1", "specificity", "auroc", "support"}


@pytest.mark.slow  # shares the demo_run fixture: a two-step fine-tune (~15-35 s on 2 cores)
def test_writes_every_output(demo_run: Path) -> None:
    for name in ("metrics.json", "predictions.csv", "per_class.csv", "confusion_matrix.png", "per_class_recall.png",
                 "config.yaml", "run.json", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (demo_run / name).is_file(), name
    assert list((demo_run / "checkpoints").glob("best-epoch*.ckpt"))
    for png in ("confusion_matrix.png", "per_class_recall.png"):
        assert (demo_run / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # shares the demo_run fixture: a two-step fine-tune (~15-35 s on 2 cores)
def test_metrics_json_contract(demo_run: Path, demo_prepared: PreparedData) -> None:
    metrics = json.loads((demo_run / "metrics.json").read_text())
    classes = list(demo_prepared.classes)
    assert metrics["classes"] == classes
    for key in ("balanced_accuracy", "accuracy", "macro_f1", "auroc_macro", "ece"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["per_class"]) == set(classes)
    assert all(set(row) == PER_CLASS_KEYS for row in metrics["per_class"].values())
    test_rows = demo_prepared.indices("test")
    assert sum(row["support"] for row in metrics["per_class"].values()) == len(test_rows)
    assert metrics["split_hash"] == demo_prepared.split_hash
    assert metrics["fraction"] == 1.0 and metrics["seed"] == 0
    assert metrics["counts"]["real"] == demo_prepared.class_counts(demo_prepared.indices("train"))
    assert metrics["counts"]["synthetic"] == {c: 5 if c == "df" else 0 for c in classes}
    assert metrics["best_checkpoint"].endswith(".ckpt")
    assert metrics["train_images_per_second"] == 0.0  # two steps: all inside the timer's warm-up
    assert metrics["train_data_wait_fraction"] is None and metrics["peak_gpu_memory_mib"] is None


@pytest.mark.slow  # shares the demo_run fixture: a two-step fine-tune (~15-35 s on 2 cores)
def test_predictions_cover_the_test_split_sorted(demo_run: Path, demo_prepared: PreparedData) -> None:
    with open(demo_run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    classes = list(demo_prepared.classes)
    assert list(rows[0]) == ["image_id", "true", "predicted", *(f"prob_{c}" for c in classes)]
    ids = [r["image_id"] for r in rows]
    assert ids == sorted(ids)
    test_ids = [demo_prepared.image_ids[i] for i in demo_prepared.indices("test")]
    assert sorted(test_ids) == ids  # real test images only, each once
    labels = {r.image_id: r.label for r in demo_prepared.source.records}
    assert all(r["true"] == labels[r["image_id"]] for r in rows)
    for r in rows[:20]:
        probs = [float(r[f"prob_{c}"]) for c in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert r["predicted"] == classes[probs.index(max(probs))]


def test_bad_input_is_a_clear_error(demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "loss.nmae=focal"])
    assert exit_info.value.code == 2
    assert "loss.name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--init", str(tmp_path / "missing.safetensors"), f"data.cache_dir={demo_cache}"])
    assert "model.init" in capsys.readouterr().err


def test_unknown_loss_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--loss", "focla"])
    err = capsys.readouterr().err
    assert "loss.name" in err and "focal" in err
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("setting", ["augment.crop_scale=0", "augment.rotation=200", "augment.jitter=1.5"])
def test_out_of_range_augmentation_is_refused_before_any_work(setting: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), setting])
    assert setting.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "run.json").exists()


@pytest.mark.usefixtures("without_grad_cam")
def test_missing_grad_cam_is_refused_before_training_not_after(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The report's Grad-CAM grids are drawn after training and testing: a machine without the package (the
    # first GPU run) lost a finished cell's metrics there. Now it stops at once, naming the way out.
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--data", "demo"])
    err = capsys.readouterr().err
    assert "report.explain=2" in err and "pip install grad-cam" in err and "report.explain=0" in err
    assert not (tmp_path / "run.json").exists()
    from finetune.explain import require_grad_cam
    require_grad_cam(0, "report.explain")  # nothing to draw: nothing needed


@pytest.mark.parametrize("weighting", ["inverse", "effective"])
def test_balanced_sampler_with_class_weights_is_refused(weighting: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Both correct the imbalance: together they would weight each minority class a second time.
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "sampler=balanced", f"loss.weighting={weighting}"])
    err = capsys.readouterr().err
    assert "sampler=balanced" in err and f"loss.weighting={weighting}" in err and "loss.weighting=none" in err
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize(("loss", "smoothing", "message"), [("focal", 0.1, "loss.name=ce only"),
                                                            ("ce", 1.0, "must lie in [0, 1)")])
def test_label_smoothing_is_checked_before_anything_runs(loss: str, smoothing: float, message: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), f"loss.label_smoothing={smoothing}", f"loss.name={loss}"])
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("preset", sorted(Path("configs").glob("finetune_*.yaml")), ids=lambda p: p.name)
def test_presets_parse(preset: Path) -> None:
    from dermkit.config import parse_config
    from finetune.config import FinetuneConfig
    from finetune.train import check_config

    cfg = parse_config(FinetuneConfig, "test", "", ["--config", str(preset)])
    check_config(cfg)
    assert run_folder(cfg).parent.name == "finetune"  # the preset's own folder or the default, under runs/finetune


def test_a_backbone_pretrained_on_another_split_is_refused(demo_prepared: PreparedData, demo_cache: Path,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_backbone(tmp_path / "ssl" / "backbone.safetensors", build_backbone("tiny_cnn", True, IMAGE_SIZE),
                            BackboneCard("tiny_cnn", IMAGE_SIZE, True, method="simclr", split_hash="0ther5p1it"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "run"), "--init", str(weights), f"data.cache_dir={demo_cache}",
              f"data.image_size={IMAGE_SIZE}"])
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines, even inside a path
    assert exit_info.value.code == 2
    assert f"{weights}wasmadeonanothersplit:splithash0ther5p1itthere,{demo_prepared.split_hash}inthisrun" in err
    assert "data.split_seed" in err and "pretrainabackboneonthissplit" in err and "model.allow_other_split=true" in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_allow_other_split_accepts_another_split_with_a_warning(demo_prepared: PreparedData,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = BackboneSpec("tiny_cnn", True, IMAGE_SIZE, [0.5] * 3, [0.5] * 3, "weights.safetensors", True,
                        {"method": "simclr", "split_hash": "0ther5p1it", "data": {}})
    check_backbone_card(spec, demo_prepared.split_hash, "none", allow_other_split=True)
    assert "model.allow_other_split=true" in "".join(capsys.readouterr().err.split())


def test_a_card_of_this_split_or_without_a_split_hash_is_accepted(demo_prepared: PreparedData) -> None:
    for split_hash in (demo_prepared.split_hash, ""):
        spec = BackboneSpec("tiny_cnn", True, IMAGE_SIZE, [0.5] * 3, [0.5] * 3, "weights.safetensors", True,
                            {"method": "simclr", "split_hash": split_hash, "data": {}})
        check_backbone_card(spec, demo_prepared.split_hash, "none")
    check_backbone_card(BackboneSpec("tiny_cnn", True, IMAGE_SIZE, [0.5] * 3, [0.5] * 3), "any", "none")  # random
