"""bench.sampler_accuracy: the same images through synth.generate with several samplers, compared
with a reference setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.probes.sampler_accuracy import differences, main, parse_setting
from dermkit.errors import DermkitError
from synth.train import main as train_main
from tests.synth.conftest import tiny_train_argv


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generate commands run as subprocesses: one OpenMP thread there too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_every_candidate_is_made_and_compared_with_the_reference(tmp_path: Path, demo_cache: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    generator = tmp_path / "generator"
    assert train_main(tiny_train_argv(generator, demo_cache)) == 0
    out, results_file = tmp_path / "images", tmp_path / "accuracy.json"
    assert main(["--model", str(generator), "--class", "mel", "--class", "df", "--n", "2", "--reference", "ddim:6",
                 "--candidate", "ddim:2", "--candidate", "dpm:2", "--batch-size", "4",
                 "--out", str(out), "--json", str(results_file)]) == 0
    results = json.loads(results_file.read_text())
    assert results["images"] == 4 and results["reference"] == "ddim:6"
    candidates = results["candidates"]
    assert set(candidates) == {"ddim:2", "dpm:2"}
    assert candidates["ddim:2"]["mean_abs"] > 0.0 and candidates["dpm:2"]["mean_abs"] > 0.0
    assert candidates["ddim:2"]["mean_abs"] != candidates["dpm:2"]["mean_abs"]
    assert all(row["seconds_per_image"] > 0 for row in candidates.values())
    assert sorted(p.name for p in out.iterdir()) == ["ddim-2", "ddim-6", "dpm-2"]
    assert json.loads((out / "dpm-2" / "timing.json").read_text())["n"] == 2
    # A re-run with another candidate makes only that one; the finished settings keep their images and time.
    made = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(["--model", str(generator), "--class", "mel", "--class", "df", "--n", "2", "--reference", "ddim:6",
                 "--candidate", "dpm:2", "--candidate", "dpm:3", "--batch-size", "4", "--out", str(out),
                 "--json", str(results_file)]) == 0
    again = json.loads(results_file.read_text())
    assert again["candidates"]["dpm:2"] == candidates["dpm:2"]
    assert again["reference_seconds_per_image"] == results["reference_seconds_per_image"]
    assert {p: p.stat().st_mtime_ns for p in made} == made
    assert (out / "dpm-3" / "timing.json").is_file()
    with pytest.raises(SystemExit) as exit_info:  # the same folders, other images: refused
        main(["--model", str(generator), "--class", "mel", "--class", "df", "--n", "1", "--reference", "ddim:6",
              "--candidate", "dpm:2", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "n: 2 -> 1" in capsys.readouterr().err


def test_differences_are_per_pixel_over_all_images() -> None:
    zeros = np.zeros((4, 4, 3), dtype=np.int16)
    reference = {"a.png": zeros, "b.png": zeros}
    candidate = {"a.png": zeros + 10, "b.png": zeros}  # half of all pixels 10 away
    assert differences(reference, candidate) == {"mean_abs": 5.0, "p99_abs": 10.0}
    assert differences(candidate, reference)["mean_abs"] == 5.0  # absolute, not signed
    with pytest.raises(DermkitError, match="different images"):
        differences(reference, {"a.png": zeros})


@pytest.mark.parametrize("text", ["dpm", "dpm:", "dpm:0", ":20", "dpm:x"])
def test_a_setting_is_sampler_colon_steps(text: str) -> None:
    with pytest.raises(DermkitError, match="SAMPLER:STEPS"):
        parse_setting(text)
    assert parse_setting("dpm:20") == ("dpm", 20)
