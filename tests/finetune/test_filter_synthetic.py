"""``python -m finetune.filter_synthetic``: keep the synthetic images a classifier assigns to their class.

The fast tests use a classifier checkpoint written directly (a seeded random ``tiny_cnn``, saved as
Lightning saves one, with the ``run.json`` ``finetune.train`` writes beside ``checkpoints/``) and a
folder written with the manifest writer's own functions, so they need neither training nor the
demo data; the slow one filters with a real ``finetune.train`` run on the demo data.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from dermkit.data.images import square_resize
from dermkit.data.prepare import PreparedData
from dermkit.manifest import ManifestRow, generator_header, read_header, write_header, write_manifest
from finetune.filter_synthetic import SCORE_COLUMNS, main
from finetune.module import ClassifierModule
from finetune.synthetic import load_synthetic

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
SPLIT = "split-a"
SIZE = 32
PER_CLASS = {"mel": 8, "df": 6, "vasc": 6}


def write_classifier(run: Path, fraction: float = 0.5, split_hash: str = SPLIT) -> Path:
    """A ``finetune.train``-style run folder: ``checkpoints/best-epoch00.ckpt`` and ``run.json``."""
    torch.manual_seed(0)
    module = ClassifierModule(classes=CLASSES, architecture="tiny_cnn", small_stem=True, image_size=SIZE,
                              mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    # What Lightning's ModelCheckpoint stores and load_from_checkpoint reads back.
    checkpoint = run / "checkpoints" / "best-epoch00.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, checkpoint)
    (run / "run.json").write_text(json.dumps({"seed": 0, "split_hash": split_hash, "fraction": fraction}))
    return checkpoint


def write_samples(folder: Path, split_hash: str = SPLIT, label_fraction: float | None = 0.5,
                  size: int = SIZE) -> Path:
    """A synth.generate folder of seeded random-coloured PNGs, written with the manifest writer's functions."""
    rng = np.random.default_rng(0)
    rows = []
    for klass, n in PER_CLASS.items():
        (folder / klass).mkdir(parents=True)
        for i in range(n):
            file = f"{klass}/{klass}_{i:06d}.png"
            colour = rng.integers(0, 256, size=3)
            noise = rng.integers(-40, 41, size=(size, size, 3))
            Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(folder / file)
            rows.append(ManifestRow(file, klass, i, 10, 2.0, "model-x", split_hash))
    write_manifest(folder, rows)
    write_header(folder, generator_header("/models/x", "model-x", split_hash, label_fraction, CLASSES, size,
                                          {"model_hash": "model-x", "sampler": "ddim", "steps": 10, "guidance": 2.0,
                                           "seed": 0}))
    return folder / "manifest.csv"


def own_class_probabilities(checkpoint: Path, manifest: Path) -> dict[str, float]:
    """Recomputed without the command's code: PIL -> resize -> normalise -> network -> softmax."""
    module = ClassifierModule.load_from_checkpoint(str(checkpoint), map_location="cpu").eval()
    hp = module.hparams
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [np.asarray(square_resize(Image.open(manifest.parent / r["file"]).convert("RGB"), hp.image_size))
              for r in rows]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    batch = (batch - torch.tensor(hp.mean).view(1, 3, 1, 1)) / torch.tensor(hp.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = module(batch).softmax(dim=1).numpy()
    return {r["file"]: float(probs[i, CLASSES.index(r["class"])]) for i, r in enumerate(rows)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run(*args: str) -> int:
    return main([*args, "num_workers=0", "trainer.accelerator=cpu"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A classifier (label fraction 0.5) and a generator folder of the same split and fraction."""
    root = tmp_path_factory.mktemp("filter")
    return {"root": root, "checkpoint": write_classifier(root / "clf"), "manifest": write_samples(root / "samples")}


@pytest.fixture(scope="module")
def filtered(setup: dict[str, Path]) -> dict[str, object]:
    """The folder filtered at the median own-class probability (half kept, half not)."""
    expected = own_class_probabilities(setup["checkpoint"], setup["manifest"])
    values = sorted(set(expected.values()))
    middle = len(values) // 2
    min_prob = (values[middle - 1] + values[middle]) / 2  # between two scores: no tie to round either way
    out = setup["root"] / "filtered"
    assert run("--checkpoint", str(setup["checkpoint"]), "--manifest", str(setup["manifest"]),
               "--min-prob", repr(min_prob), "--out", str(out), f"cache_dir={setup['root'] / 'cache'}") == 0
    return {"out": out, "min_prob": min_prob, "expected": expected}


def test_keeps_exactly_the_images_whose_score_passes(setup: dict[str, Path], filtered: dict[str, object]) -> None:
    out, min_prob, expected = filtered["out"], filtered["min_prob"], filtered["expected"]
    assert isinstance(out, Path) and isinstance(min_prob, float) and isinstance(expected, dict)
    scores = read_csv(out / "scores.csv")
    assert list(scores[0]) == list(SCORE_COLUMNS)
    assert [s["file"] for s in scores] == list(expected)  # every image scored, in manifest order
    for s in scores:
        assert float(s["probability"]) == pytest.approx(expected[s["file"]], abs=1e-5)
        assert s["kept"] == str(int(float(s["probability"]) >= min_prob))
        assert s["predicted"] in CLASSES
    wanted = {f for f, p in expected.items() if p >= min_prob}
    assert 0 < len(wanted) < len(expected)  # the threshold splits the images
    assert {s["file"] for s in scores if s["kept"] == "1"} == wanted

    source_rows = read_csv(setup["manifest"])
    kept_rows = read_csv(out / "manifest.csv")
    assert kept_rows == [r for r in source_rows if r["file"] in wanted]  # the source's rows, unchanged
    assert (out / "manifest.csv").read_text().splitlines()[0] == setup["manifest"].read_text().splitlines()[0]
    for row in kept_rows:  # the original files, linked under the same relative path
        assert os.path.samefile(out / row["file"], setup["manifest"].parent / row["file"])
    assert not any((out / f).exists() for f in set(expected) - wanted)


def test_header_records_the_filter_and_the_rate_per_class(setup: dict[str, Path],
                                                          filtered: dict[str, object]) -> None:
    out, min_prob, expected = filtered["out"], filtered["min_prob"], filtered["expected"]
    assert isinstance(out, Path) and isinstance(expected, dict)
    header = read_header(out)
    source = read_header(setup["manifest"].parent)
    assert header is not None and source is not None
    assert {k: header[k] for k in source} == source  # the generator's fields, label_fraction included
    section = header["filter"]
    assert section["checkpoint"] == str(setup["checkpoint"].resolve())
    assert section["classifier"]["split_hash"] == SPLIT and section["classifier"]["label_fraction"] == 0.5
    assert section["min_prob"] == min_prob
    assert section["source_manifest"] == str(setup["manifest"].resolve())
    for klass, n in PER_CLASS.items():
        kept = sum(1 for f, p in expected.items() if f.startswith(f"{klass}/") and p >= min_prob)
        assert section["acceptance"][klass] == {"scored": n, "kept": kept, "rate": kept / n}
    assert section["kept"] == sum(1 for p in expected.values() if p >= min_prob)
    assert section["scored"] == len(expected)
    assert sum(section["files"].values()) == section["kept"]
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()


def test_filtered_manifest_is_accepted_by_the_finetune_loader(setup: dict[str, Path],
                                                              filtered: dict[str, object]) -> None:
    out = filtered["out"]
    assert isinstance(out, Path)
    kept = read_header(out)["filter"]["acceptance"]  # type: ignore[index]
    images = load_synthetic(out / "manifest.csv", CLASSES, {c: 100 for c in CLASSES}, SPLIT, SIZE,
                            setup["root"] / "cache", max_ratio=1.0, fraction=0.5, dataset_files=[])
    assert images.label_fraction == 0.5  # the generator's, as finetune.train checks it
    assert images.counts == {c: kept[c]["kept"] if c in kept else 0 for c in CLASSES}


def test_min_prob_zero_keeps_all_and_smaller_images_are_resized(tmp_path: Path, setup: dict[str, Path]) -> None:
    manifest = write_samples(tmp_path / "small", size=16)  # the classifier sees 32 px
    out = tmp_path / "all"
    assert run("--checkpoint", str(setup["checkpoint"]), "--manifest", str(manifest.parent), "--min-prob", "0",
               "--out", str(out), f"cache_dir={tmp_path / 'cache'}") == 0
    assert read_csv(out / "manifest.csv") == read_csv(manifest)
    assert all(s["kept"] == "1" for s in read_csv(out / "scores.csv"))
    expected = own_class_probabilities(setup["checkpoint"], manifest)
    for s in read_csv(out / "scores.csv"):  # resized as finetune.train resizes (short side, centre crop)
        assert float(s["probability"]) == pytest.approx(expected[s["file"]], abs=1e-5)
    section = read_header(out)["filter"]  # type: ignore[index]
    assert section["classifier"]["image_size"] == SIZE
    assert all(c["rate"] == 1.0 for c in section["acceptance"].values())

    # A stricter re-run into the same folder replaces it: the images it no longer keeps go.
    assert run("--checkpoint", str(setup["checkpoint"]), "--manifest", str(manifest), "--min-prob", "1",
               "--out", str(out), f"cache_dir={tmp_path / 'cache'}") == 0
    assert read_csv(out / "manifest.csv") == []
    assert not list(out.glob("*/*.png"))


@pytest.mark.parametrize("case", ["split", "fraction", "unrecorded"])
def test_a_classifier_that_does_not_fit_the_generator_is_refused(case: str, tmp_path: Path, setup: dict[str, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if case == "split":
        manifest = write_samples(tmp_path / "samples", split_hash="split-b")
    else:  # the generator saw fewer labels than the classifier (0.5), or does not say how many
        manifest = write_samples(tmp_path / "samples", label_fraction=0.25 if case == "fraction" else None)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run("--checkpoint", str(setup["checkpoint"]), "--manifest", str(manifest), "--out", str(out),
            f"cache_dir={tmp_path / 'cache'}")
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap long paths
    assert exit_info.value.code == 2
    assert str(setup["checkpoint"].resolve()) in err and str(manifest) in err
    if case == "split":
        assert "split-b" in err and SPLIT in err
    elif case == "fraction":
        assert "0.5" in err and "0.25" in err
    else:
        assert "label fraction" in err
    assert not out.exists()  # refused before any output


def test_bad_settings_are_refused(tmp_path: Path, setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, manifest = str(setup["checkpoint"]), str(setup["manifest"])
    for args, says in [(["--min-prob", "1.5"], "min_prob"),
                       (["--out", str(setup["manifest"].parent)], "folder of the manifest being filtered")]:
        with pytest.raises(SystemExit) as exit_info:
            run("--checkpoint", checkpoint, "--manifest", manifest, *args)
        assert exit_info.value.code == 2 and says in " ".join(capsys.readouterr().err.split())
    # A checkpoint away from its run folder has no run.json to say which split it was trained on.
    moved = tmp_path / "moved.ckpt"
    moved.write_bytes(setup["checkpoint"].read_bytes())
    with pytest.raises(SystemExit):
        run("--checkpoint", str(moved), "--manifest", manifest, "--out", str(tmp_path / "out"))
    assert "run.json" in capsys.readouterr().err


@pytest.mark.slow  # needs the demo_run fixture (a two-step fine-tune)
def test_filters_with_a_finetune_train_checkpoint(demo_run: Path, demo_prepared: PreparedData, demo_cache: Path,
                                                  tmp_path: Path) -> None:
    from tests.finetune.helpers import write_manifest as write_magenta

    manifest = write_magenta(tmp_path / "samples", demo_prepared.split_hash, {"mel": 3, "df": 3}, label_fraction=1.0)
    checkpoint = next((demo_run / "checkpoints").glob("best-epoch*.ckpt"))
    out = tmp_path / "out"
    assert run("--checkpoint", str(checkpoint), "--manifest", str(manifest), "--min-prob", "0", "--out", str(out),
               f"cache_dir={demo_cache}") == 0
    section = read_header(out)["filter"]  # type: ignore[index]
    assert section["classifier"]["split_hash"] == demo_prepared.split_hash
    assert section["classifier"]["label_fraction"] == 1.0
    assert section["classifier"]["synthetic_manifest"]  # demo_run trains with synthetic df images: recorded
    train = demo_prepared.indices("train")
    images = load_synthetic(out / "manifest.csv", demo_prepared.classes, demo_prepared.class_counts(train),
                            demo_prepared.split_hash, 32, demo_cache, max_ratio=1.0, fraction=1.0,
                            dataset_files=[r.path for r in demo_prepared.source.records if r.path is not None])
    assert images.counts["mel"] == 3 and images.counts["df"] == 3
