"""``grid.external``: blind predictions of every cell on an external folder, resumed, exported and reused;
``grid.external_labels`` scores a labelled one with the test split's tables."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.grid.keys import DONE_FILE
from bench.label_efficiency import main
from dermkit.config import DataConfig
from dermkit.data.prepare import prepare_data


def _external_folder(root: Path, cache: Path, count: int = 6) -> dict[str, str]:
    """``count`` demo images copied below ``root`` (one in a subfolder, one with an upper-case extension);
    their ids and true classes."""
    prepared = prepare_data(DataConfig(name="demo", image_size=32, cache_dir=str(cache)))
    labels = {}
    for k, record in enumerate(prepared.source.records[:count]):
        image_id = f"sub/x{k}" if k == 0 else f"x{k}"
        target = root / f"{image_id}{'.PNG' if k == 1 else record.path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, target)
        labels[image_id] = str(record.label)
    return labels


def _config(tmp_path: Path, external: dict[str, str], labels: dict[str, str]) -> Path:
    config = tmp_path / "bench.yaml"
    config.write_text(OmegaConf.to_yaml({
        "preset": "test", "about": "two cells with external sets",
        "data": {"name": "demo", "image_size": 32, "batch_size": 32, "num_workers": 0},
        "model": {"backbone": "tiny_cnn", "small_stem": True},
        "grid": {"fractions": [1.0], "inits": ["random"], "arms": ["real", "oversample"], "seeds": [0],
                 "external": external, "external_labels": labels},
        "finetune": {"overrides": ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.accelerator=cpu"]},
        "run": {"jobs": 2, "threads": 1},
        "report": {"n_bootstrap": 200},
    }))
    return config


@pytest.mark.slow
def test_grid_predicts_external_folders_resumes_exports_and_reuses(tmp_path: Path, demo_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    truth = _external_folder(tmp_path / "blind", demo_cache)
    _external_folder(tmp_path / "scored", demo_cache)
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "label"])
        writer.writerows(sorted(truth.items()))
    config = _config(tmp_path, {"blind": str(tmp_path / "blind"), "scored": str(tmp_path / "scored")},
                     {"scored": str(labels)})
    out, exported = tmp_path / "out", tmp_path / "exported"
    assert main(["--config", str(config), "--out", str(out), "--export", str(exported)]) == 0

    cells = ["f1-random-oversample-s0", "f1-random-real-s0"]
    for cell in cells:
        for name in ("blind", "scored"):
            with (out / "external" / cell / name / "predictions.csv").open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            assert sorted(r["image_id"] for r in rows) == sorted(truth)
            kept = exported / "cells" / cell / "external" / name
            assert {p.name for p in kept.iterdir()} >= {"predictions.csv", "predictions_without_tta.csv", DONE_FILE}
    report = (out / "report.md").read_text()
    assert "## External set `blind` (blind)" in report and "no labels in the project" in report
    assert "## External set `scored` (labelled)" in report
    scored = (out / "external-reports" / "scored" / "report.md").read_text()
    assert "Scored on the external set `scored`" in scored
    assert (exported / "external-reports" / "scored" / "results.csv").is_file()
    assert "recall" not in report.split("## External set `blind`")[1].split("## External set `scored`")[0]

    def finished() -> dict[str, str]:
        return {str(p.parent.relative_to(out)): p.read_text() for p in out.rglob(DONE_FILE)}

    first = finished()
    assert len(first) == 6  # two cells, four predict steps
    assert main(["--config", str(config), "--out", str(out)]) == 0
    assert finished() == first  # resumed: nothing ran again

    # Another image in the blind folder: its predict steps run again, nothing else.
    shutil.copy(next((tmp_path / "blind").glob("x2.*")), tmp_path / "blind" / "x9.png")
    assert main(["--config", str(config), "--out", str(out), "--export", str(exported)]) == 0
    again = finished()
    assert sorted(k for k in first if again[k] != first[k]) == [f"external/{c}/blind" for c in cells]

    # A new machine: the export (no checkpoints) brings back the cells with their predictions.
    fresh = tmp_path / "fresh"
    assert main(["--config", str(config), "--out", str(fresh), "--reuse", str(exported)]) == 0
    for cell in cells:
        assert not (fresh / "cells" / cell / "checkpoints").exists()  # taken, not trained
        for name in ("blind", "scored"):
            assert (fresh / "external" / cell / name / DONE_FILE).read_text() == again[f"external/{cell}/{name}"]
    # Had an external folder changed since, the cell could not be taken without its checkpoint.
    (tmp_path / "blind" / "x9.png").unlink()
    fresher = tmp_path / "fresher"
    assert main(["--config", str(config), "--out", str(fresher), "--reuse", str(exported)]) == 0
    assert all((fresher / "cells" / cell / "checkpoints").is_dir() for cell in cells)  # trained again


def test_external_settings_are_checked_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        "missing": ({"isic": str(tmp_path / "nowhere")}, {}, "is not a folder"),
        "empty": ({"isic": str(tmp_path / "empty")}, {}, "holds no images"),
        "labels of no set": ({}, {"ph2": str(tmp_path / "labels.csv")}, "no grid.external.ph2"),
    }
    for external, labels, expected in cases.values():
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(_config(tmp_path, external, labels)), "--out", str(tmp_path / "out"), "--dry-run"])
        assert exit_.value.code == 2 and expected in capsys.readouterr().err
