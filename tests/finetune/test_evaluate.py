"""External evaluation on an ISIC-format dataset holding a subset of the classes plus an unknown one."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from dermkit.data.prepare import PreparedData
from finetune.evaluate import main


def _isic_folder(root: Path, prepared: PreparedData) -> dict[str, int]:
    """An ISIC 2019-style folder: 4 mel and 4 nv demo images, and 3 scc images the model never saw."""
    root.mkdir()
    picked: list[tuple[str, str]] = []
    for klass in ("mel", "nv"):
        records = [r for r in prepared.source.records if r.label == klass][:4]
        for r in records:
            shutil.copy(r.path, root / f"ISIC_{r.image_id}.png")
            picked.append((f"ISIC_{r.image_id}", klass))
    donor = prepared.source.records[0].path
    for i in range(3):
        shutil.copy(donor, root / f"ISIC_scc{i}.png")
        picked.append((f"ISIC_scc{i}", "scc"))
    with open(root / "ISIC_2019_Test_GroundTruth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "MEL", "NV", "SCC"])
        for image, klass in picked:
            writer.writerow([image, *(f"{float(klass == c):.1f}" for c in ("mel", "nv", "scc"))])
    return {"mel": 4, "nv": 4, "scc": 3}


@pytest.mark.slow  # needs the demo_run fixture (a two-step fine-tune)
def test_external_evaluation_reports_unknown_classes(demo_run: Path, demo_prepared: PreparedData,
                                                     demo_cache: Path, tmp_path: Path) -> None:
    support = _isic_folder(tmp_path / "isic", demo_prepared)
    checkpoint = next((demo_run / "checkpoints").glob("best-epoch*.ckpt"))
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(checkpoint), "--data", "isic", "--root", str(tmp_path / "isic"),
                 "--out", str(out), f"data.cache_dir={demo_cache}", "data.num_workers=0",
                 "trainer.accelerator=cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(demo_prepared.classes)  # the model's classes
    assert metrics["dataset_classes"] == ["mel", "nv", "scc"]
    assert metrics["per_class"]["mel"]["support"] == 4 and metrics["per_class"]["nv"]["support"] == 4
    assert metrics["per_class"]["bcc"]["support"] == 0 and metrics["per_class"]["bcc"]["recall"] is None
    assert metrics["num_images"] == 8 and metrics["num_unscored"] == 3
    unknown = metrics["unknown_classes"]
    assert list(unknown) == ["scc"] and unknown["scc"]["support"] == 3
    assert sum(unknown["scc"]["predicted_as"].values()) == 3
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(support.values())  # unknown-class images are kept, not dropped
    assert sum(r["true"] == "scc" for r in rows) == 3
    for name in ("per_class.csv", "confusion_matrix.png", "per_class_recall.png", "run.json"):
        assert (out / name).is_file()


@pytest.mark.usefixtures("without_grad_cam")
def test_explain_without_grad_cam_is_refused_before_the_model_loads(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--explain", "4", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert "--explain=4" in err and "grad-cam" in err and "missing.ckpt" not in err
