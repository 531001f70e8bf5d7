"""``finetune.predict`` on an unlabelled folder: ids, columns, probabilities, the same scores as evaluate."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from dermkit.data.prepare import PreparedData
from finetune.evaluate import main as evaluate
from finetune.predict import main as predict

COMMON = ["data.num_workers=0", "trainer.accelerator=cpu"]


def _unlabelled_folder(root: Path, prepared: PreparedData) -> list[str]:
    """Six demo images in nested folders with mixed extension case; their expected ids."""
    ids = []
    for k, record in enumerate(prepared.source.records[:6]):
        sub = root / ("a" if k % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        suffix = ".PNG" if k == 0 else record.path.suffix
        shutil.copy(record.path, sub / f"img{k}{suffix}")
        ids.append(f"{sub.relative_to(root)}/img{k}")
    return sorted(ids)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # needs the demo_run fixture (a two-step fine-tune)
def test_predict_writes_ids_columns_and_the_scores_of_evaluate(demo_run: Path, demo_prepared: PreparedData,
                                                               demo_cache: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ids = _unlabelled_folder(tmp_path / "images", demo_prepared)
    checkpoint = next((demo_run / "checkpoints").glob("best-epoch*.ckpt"))
    out = tmp_path / "pred"
    assert predict(["--checkpoint", str(checkpoint), "--root", str(tmp_path / "images"), "--out", str(out), "--tta",
                    f"data.cache_dir={demo_cache}", *COMMON]) == 0
    classes = list(demo_prepared.classes)
    for name in ("predictions.csv", "predictions_without_tta.csv"):
        rows = _rows(out / name)
        assert [r["image_id"] for r in rows] == ids
        assert list(rows[0]) == ["image_id", "predicted", *(f"prob_{c}" for c in classes)]
        for row in rows:
            probs = [float(row[f"prob_{c}"]) for c in classes]
            assert sum(probs) == pytest.approx(1.0, abs=len(classes) * 5e-5)
            assert all(len(row[f"prob_{c}"].split(".")[1]) == 4 for c in classes)
            assert row["predicted"] == classes[max(range(len(classes)), key=probs.__getitem__)]
    info = json.loads((out / "run.json").read_text())
    assert info["classes"] == classes and info["images"] == 6 and info["tta"] is True
    assert len(info["checkpoint_sha256"]) == 64 and info["image_size"] > 0
    shown = capsys.readouterr()
    assert "Predicted classes" in shown.out + shown.err

    # The same images, labelled, through finetune.evaluate: the same probabilities.
    labelled = tmp_path / "labelled"
    for k, record in enumerate(demo_prepared.source.records[:6]):
        (labelled / str(record.label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, labelled / str(record.label) / f"img{k}{record.path.suffix}")
    scored = tmp_path / "eval"
    assert evaluate(["--checkpoint", str(checkpoint), "--data", "imagefolder", "--root", str(labelled),
                     "--out", str(scored), f"data.cache_dir={demo_cache}", *COMMON]) == 0
    evaluated = {r["image_id"].split("/")[-1]: r for r in _rows(scored / "predictions.csv")}
    for row in _rows(out / "predictions_without_tta.csv"):
        other = evaluated[row["image_id"].split("/")[-1]]
        for c in classes:
            assert float(row[f"prob_{c}"]) == pytest.approx(float(other[f"prob_{c}"]), abs=1e-4)


@pytest.mark.slow
def test_predict_names_a_bad_file_and_skips_it_when_asked(demo_run: Path, demo_prepared: PreparedData,
                                                          demo_cache: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _unlabelled_folder(tmp_path / "images", demo_prepared)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    checkpoint = next((demo_run / "checkpoints").glob("best-epoch*.ckpt"))
    args = ["--checkpoint", str(checkpoint), "--root", str(tmp_path / "images"), f"data.cache_dir={demo_cache}",
            *COMMON]
    with pytest.raises(SystemExit) as exit_:
        predict([*args, "--out", str(tmp_path / "refused")])
    assert exit_.value.code == 2 and "broken.jpg" in capsys.readouterr().err
    assert predict([*args, "--out", str(tmp_path / "pred"), "data.skip_bad=true"]) == 0
    info = json.loads((tmp_path / "pred" / "run.json").read_text())
    assert info["images"] == 6 and [s["image_id"] for s in info["skipped"]] == ["broken"]
    assert len(_rows(tmp_path / "pred" / "predictions.csv")) == 6


@pytest.mark.parametrize("case", ["empty", "file", "no-out", "labelled-reader"])
def test_predict_bad_input_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "model.ckpt").write_bytes(b"")
    root = {"empty": tmp_path / "empty", "file": tmp_path / "notes.txt"}.get(case, tmp_path / "empty")
    args = ["--checkpoint", str(tmp_path / "model.ckpt"), "--root", str(root)]
    if case != "no-out":
        args += ["--out", str(tmp_path / "out")]
    if case == "labelled-reader":
        args += ["data.name=ham10000"]
    with pytest.raises(SystemExit) as exit_:
        predict(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    expected = {"empty": "holds no images", "file": "is a file", "no-out": "--out", "labelled-reader": "finetune.evaluate"}
    assert expected[case] in err
