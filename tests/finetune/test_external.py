"""External sets with other class lists: several-to-one names, class maps, melanoma against the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class
from finetune.evaluate import main
from finetune.external import load_class_map, melanoma_vs_rest, sensitivity_at_specificity
from tests.finetune.test_explain import tiny_classifier

MODEL_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


@pytest.fixture()
def tiny_run(tmp_path: Path) -> Path:
    """A finetune.train-style run folder: an untrained tiny_cnn checkpoint and the run's metrics.json."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = tiny_classifier(MODEL_CLASSES, image_size=32)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, run / "checkpoints" / "best-epoch00.ckpt")
    metrics = {"per_class": {c: {"specificity": 0.9 if c == "mel" else 0.5} for c in MODEL_CLASSES}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run / "checkpoints" / "best-epoch00.ckpt"


def image_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{folder}_{i}.png")
    return root


def _evaluate(checkpoint: Path, root: Path, out: Path, tmp_path: Path, *extra: str) -> dict:
    assert main(["--checkpoint", str(checkpoint), "--data", "imagefolder", "--root", str(root), "--out", str(out),
                 f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0", "data.batch_size=8",
                 "trainer.accelerator=cpu", "report.bootstrap=20", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_the_vocabulary_maps_split_nevi_to_nevus() -> None:
    assert canonical_class("common_nevus") == canonical_class("Atypical Nevus") == "nv"


def test_three_folders_are_scored_as_melanoma_against_the_rest(tiny_run: Path, tmp_path: Path) -> None:
    root = image_folder(tmp_path / "ph2", {"common_nevus": 4, "atypical_nevus": 3, "melanoma": 3})
    metrics = _evaluate(tiny_run, root, tmp_path / "eval", tmp_path)
    assert metrics["dataset_classes"] == ["mel", "nv"]
    assert metrics["per_class"]["nv"]["support"] == 7 and metrics["per_class"]["mel"]["support"] == 3
    sources = metrics["source_classes"]
    assert {k: (v["mapped_to"], v["images"]) for k, v in sources.items()} == {
        "atypical_nevus": ("nv", 3), "common_nevus": ("nv", 4), "melanoma": ("mel", 3)}
    binary = metrics["melanoma_vs_rest"]
    assert binary["positives"] == 3 and binary["negatives"] == 7
    assert binary["reference_specificity"] == 0.9  # read from the run's metrics.json
    assert binary["auroc"] is not None and binary["sensitivity_at_reference_specificity"] is not None
    page = (tmp_path / "eval" / "report" / "index.html").read_text()
    assert "Melanoma against the rest" in page and "atypical_nevus" in page


def test_a_class_map_names_folders_and_unscorable_classes_are_kept(tiny_run: Path, tmp_path: Path) -> None:
    root = image_folder(tmp_path / "set", {"benign": 4, "malignant_melanoma": 2, "squamous": 2})
    class_map = tmp_path / "map.yaml"
    class_map.write_text("benign: nv\nmalignant_melanoma: melanoma\nsquamous: scc\n")
    metrics = _evaluate(tiny_run, root, tmp_path / "eval", tmp_path, "--class-map", str(class_map))
    assert metrics["num_images"] == 6 and metrics["num_unscored"] == 2
    assert metrics["unknown_classes"]["scc"]["support"] == 2  # counted and listed, never dropped
    assert metrics["source_classes"]["squamous"] == {"mapped_to": "scc", "how": "class map", "images": 2,
                                                     "scored": False}
    assert "melanoma_vs_rest" not in metrics  # three classes: not a binary set


def test_the_checkpoint_sets_the_image_size(tiny_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder(tmp_path / "set", {"nevus": 2, "melanoma": 2})
    metrics = _evaluate(tiny_run, root, tmp_path / "eval", tmp_path, "data.image_size=40")
    assert metrics["data"]["image_size"] == 32  # the model's, not the 40 asked for
    note = "".join(capsys.readouterr().err.split())  # rich wraps long lines, even inside a path
    assert f"data.image_size=32fromthecheckpoint{tiny_run}insteadof40" in note


def test_a_class_map_with_an_unknown_class_is_an_error_naming_it(tiny_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder(tmp_path / "set", {"benign": 1, "melanoma": 1})
    class_map = tmp_path / "map.yaml"
    class_map.write_text("benign: harmless_spot\n")
    with pytest.raises(DermkitError, match=r"'harmless_spot' is not a class\. Valid classes: akiec, bcc"):
        load_class_map(class_map, ["benign", "melanoma"])
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tiny_run), "--data", "imagefolder", "--root", str(root),
              "--class-map", str(class_map), f"data.cache_dir={tmp_path / 'cache'}"])
    assert exit_info.value.code == 2 and "'harmless_spot' is not a class" in capsys.readouterr().err
    class_map.write_text("benin: nv\n")
    with pytest.raises(DermkitError, match="benin.*does not have"):
        load_class_map(class_map, ["benign", "melanoma"])


def test_sensitivity_at_a_given_specificity() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.9])
    positive = np.array([False, False, False, False, True, True, True])
    # Specificity 0.75 needs 3 of 4 negatives below the threshold: just above 0.3.
    sensitivity, threshold = sensitivity_at_specificity(scores, positive, 0.75)
    assert 0.3 < threshold <= 0.35 and sensitivity == 1.0
    sensitivity, threshold = sensitivity_at_specificity(scores, positive, 1.0)
    assert threshold > 0.4 and sensitivity == pytest.approx(2 / 3)
    probs = np.stack([1 - scores, scores], axis=1)
    result = melanoma_vs_rest(probs, ["nv", "nv", "nv", "nv", "mel", "mel", "mel"], ["nv", "mel"], 1.0)
    assert result["sensitivity"] == pytest.approx(2 / 3) and result["specificity"] == 1.0
    assert result["auroc"] == 1.0 - 1 / 12 and result["sensitivity_at_reference_specificity"] == pytest.approx(2 / 3)


def test_the_class_table_counts_the_evaluated_images_only(tmp_path: Path) -> None:
    from dermkit.data.readers.imagefolder import read_imagefolder
    from finetune.external import source_class_table

    source = read_imagefolder(image_folder(tmp_path / "set", {"common_nevus": 3, "melanoma": 2}), False)
    everything = source_class_table(source, MODEL_CLASSES, None)
    assert {k: v["images"] for k, v in everything.items()} == {"common_nevus": 3, "melanoma": 2}
    assert everything["common_nevus"]["how"] == "vocabulary" and everything["melanoma"]["mapped_to"] == "mel"
    some = source_class_table(source, MODEL_CLASSES, None, rows=[0, 4])
    assert {k: v["images"] for k, v in some.items()} == {"common_nevus": 1, "melanoma": 1}
