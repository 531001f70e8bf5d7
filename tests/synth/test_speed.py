"""synth.speed: the stage's timing command, on a trained generator folder and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermkit.config import parse_config
from dermkit.errors import DermkitError
from synth.speed import FLAGS, RESULTS_FILE, SpeedConfig, main, measure


def test_generator_folder_is_timed_and_recorded(tiny_generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed"
    assert main(["--model", str(tiny_generator), "--batch-size", "2", "--ddim-steps", "2", "--dpm-steps", "2",
                 "--ddpm-steps", "3", "--train-steps", "1", "--device", "cpu", "--out", str(out)]) == 0
    results = json.loads((out / RESULTS_FILE).read_text())
    assert results["model"] == f"{tiny_generator} (tiny, 16 px)"  # the folder's preset, not --preset
    assert results["ddim_steps"] == 2 and results["ddpm_steps"] == 3 and results["train_steps_per_s"] > 0
    assert results["dpm_steps"] == 2 and results["dpm_images_per_s"] > 0
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()


@pytest.mark.parametrize(("override", "message"), [("train_steps=0", "train_steps must be at least 1"),
                                                   ("dpm_steps=0", "dpm_steps must be at least 1"),
                                                   ("preset=tinny", "Unknown UNet preset 'tinny'"),
                                                   ("train_precisions=[16-mixed]", "train_precisions must be"),
                                                   ("train_precisions=[]", "train_precisions must be"),
                                                   ("device=tpu", "device must be auto, cpu or cuda")])
def test_bad_settings_are_refused_before_anything_is_written(override: str, message: str, tmp_path: Path) -> None:
    cfg = parse_config(SpeedConfig, "t", "t", ["--out", str(tmp_path / "speed"), override], FLAGS)
    with pytest.raises(DermkitError, match=message):
        measure(cfg)
    assert not (tmp_path / "speed").exists()
