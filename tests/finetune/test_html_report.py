"""The HTML evaluation report: its files, its numbers, and that it renders in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from dermkit.metrics import classification_report
from finetune.config import ReportConfig
from finetune.evaluate import main
from finetune.html_report import SECTION_IDS, reliability_bins, roc_points, write_html_report
from tests.finetune.test_explain import MEAN, STD, random_images, tiny_classifier
from tests.finetune.test_external import MODEL_CLASSES, image_folder

CLASSES = ["mel", "nv", "bkl"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(*args: str) -> subprocess.CompletedProcess:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--disable-component-update", "--no-first-run", "--disable-sync",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of an untrained tiny model on 30 random images, 3 classes (plus 2 of an unknown class)."""
    tmp_path = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    model = tiny_classifier(CLASSES)
    images = random_images(32)
    probs = rng.dirichlet(np.ones(3), size=32)
    targets = np.r_[np.arange(30) % 3, -1, -1]
    known = targets >= 0
    report = classification_report(torch.from_numpy(probs[known]).float(), torch.from_numpy(targets[known]), CLASSES)
    tta = {"without": report, "with": report}
    write_html_report(tmp_path, model, images, [f"img{i:02d}" for i in range(32)], probs, targets, CLASSES, report,
                      ReportConfig(bootstrap=30, explain=1, mistakes=5), "test report", MEAN, STD, ["a summary line"],
                      tta, {"source_classes": {}, "unknown_classes": {"scc": {"support": 2, "predicted_as": {"nv": 2}}}})
    return tmp_path / "report"


def test_the_report_folder_is_self_contained(report_folder: Path) -> None:
    page = (report_folder / "index.html").read_text()
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for name in ("confusion_matrix.png", "roc_curves.png", "reliability.png", "cam_mel.png", "cam_nv.png"):
        assert (report_folder / name).is_file() and f'src="{name}"' in page
    thumbs = sorted((report_folder / "thumbs").glob("*.png"))
    assert len(thumbs) == 5 and all(f'src="thumbs/{t.name}"' in page for t in thumbs)
    assert "scc" in page  # the unscorable class is listed
    # the CAM layer of the 32 px tiny_cnn (small stem): its last ReLU, 8 x 8
    assert '<p id="cam-layer">CAM layer 8: 8 x 8 maps at 32 px input (the deepest layer' in page


def test_reliability_bins_give_the_reports_ece_and_roc_points_span_the_square() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3) * 0.5, size=200)
    targets = rng.integers(0, 3, 200)
    report = classification_report(torch.from_numpy(probs).float(), torch.from_numpy(targets), CLASSES)
    assert reliability_bins(probs, targets)["ece"] == pytest.approx(report["ece"], abs=1e-5)
    fpr, tpr = roc_points(probs[:, 0], targets == 0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_the_report_renders_in_headless_chromium(report_folder: Path, tmp_path: Path) -> None:
    url = (report_folder / "index.html").resolve().as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in dom.stdout, section
    assert 'id="balanced-accuracy"' in dom.stdout and 'id="ece"' in dom.stdout
    shot = tmp_path / "shot.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1000,1400", url)
    assert result.returncode == 0 and shot.is_file()
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # text and figures drawn, not a blank page


def test_evaluate_writes_the_report_with_and_without_tta(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = tiny_classifier(MODEL_CLASSES)
    model.hparams.color_constancy = "shades_of_gray"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, run / "checkpoints" / "best.ckpt")
    root = image_folder(tmp_path / "set", {"mel": 3, "nv": 3, "bkl": 2})
    args = ["--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--data", "imagefolder", "--root", str(root),
            f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0", "trainer.accelerator=cpu",
            "report.bootstrap=20"]
    with pytest.raises(SystemExit):  # a colour constancy other than the model's is refused
        main([*args, "--out", str(tmp_path / "no"), "data.color_constancy=none"])
    with pytest.raises(SystemExit):  # so is a CAM layer the backbone lacks, before any image is read
        main([*args, "--out", str(tmp_path / "no"), "--explain", "1", "report.cam_layer=layer4"])
    assert not (tmp_path / "no").exists() and not (tmp_path / "cache").exists()
    assert main([*args, "--out", str(tmp_path / "eval"), "--tta", "--explain", "1", "report.cam_layer=5"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["data"]["color_constancy"] == "shades_of_gray"  # the model's setting, applied
    assert metrics["tta"] is True and set(metrics["without_tta"]) == {"balanced_accuracy", "accuracy",
                                                                      "auroc_macro", "ece"}
    assert metrics["report"]["page"] == "report/index.html"
    assert metrics["report"]["bootstrap"]["replicates"] == 20
    assert metrics["report"]["cam_layer"] == {"name": "5", "map_size": [16, 16], "input_size": 32,
                                              "chosen_by": "report.cam_layer"}
    page = (tmp_path / "eval" / "report" / "index.html").read_text()
    assert "<td>without</td>" in page and "<td>with</td>" in page
    assert (tmp_path / "eval" / "report" / "cam_mel.png").is_file()


@pytest.mark.slow  # needs the demo_run fixture (a two-step fine-tune)
def test_train_writes_the_report_for_its_test_split(demo_run: Path) -> None:
    metrics = json.loads((demo_run / "metrics.json").read_text())
    page = (demo_run / metrics["report"]["page"]).read_text()
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in page
    intervals = metrics["report"]["bootstrap"]
    low, high = intervals["balanced_accuracy"]
    assert 0.0 <= low <= high <= 1.0 and intervals["replicates"] == 1000  # report.bootstrap's default
    assert metrics["data"]["color_constancy"] == "none"
    assert (demo_run / "report" / "cam_nv.png").is_file()  # finetune.train draws report.explain=2 per group
    assert metrics["report"]["cam_layer"]["map_size"] == [8, 8]  # tiny_cnn, small stem, 32 px: the last ReLU
