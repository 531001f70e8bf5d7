"""bench.synth_quality: train, generate and evaluate (each its own stage command) in one command; the
report ranks every class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bench.probes.synth_quality import main


def test_one_command_writes_report_table_and_figure(tmp_path: Path, demo_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    out, samples, figure = tmp_path / "gen", tmp_path / "samples_g1", tmp_path / "grid.png"
    argv = ["--out", str(out), "--samples", str(samples), "--preset", "tiny", "--data", "demo",
            "--image-size", "16", "--steps", "2", "--batch-size", "8", "--warmup", "1", "--classes", "mel", "vasc",
            "--n", "2", "--gen-batch-size", "2", "--sample-steps", "2", "--guidance", "1.0", "--figure", str(figure)]
    # The stages run as subprocesses, which read this: a tiny UNet on a loaded 2-core machine is far
    # faster with one thread.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(argv) == 0

    report = json.loads((samples / "quality.json").read_text())
    assert set(report["classes"]) == {"mel", "vasc"}
    for klass, metrics in report["classes"].items():
        assert len(metrics["to_class"]) == 7  # ranked against every training class
        assert 1 <= metrics["own_rank_kid"] <= 7 and metrics["held_out_real"]["n"] == 2
    table = (samples / "quality.md").read_text()
    assert "| mel (melanoma) | 2 |" in table and "| vasc (vascular lesion) | 2 |" in table
    for metrics in report["classes"].values():  # copy rate (near-copies, of them near an image of own class)
        own = metrics["near_copies_own_class"]
        assert f"| {metrics['copy_rate']:.3f} ({metrics['near_copies']}, {own}) |" in table
    grids = [Image.open(samples / "eval" / "grids" / f"{c}.png") for c in ("mel", "vasc")]
    assert Image.open(figure).height == sum(g.height for g in grids)
    assert not (out / "samples").exists()  # the report went where --samples said
    assert report == json.loads((samples / "eval" / "metrics.json").read_text())  # synth.evaluate's own report


def test_a_failing_stage_stops_the_benchmark(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out, samples = tmp_path / "gen", tmp_path / "samples"
    with pytest.raises(SystemExit) as exit_info:  # synth.train refuses the preset; nothing after it runs
        main(["--out", str(out), "--samples", str(samples), "--preset", "tinny", "--data", "demo"])
    assert exit_info.value.code == 2
    err = capfd.readouterr().err  # capfd: the stage's own message comes from the subprocess
    assert "Unknown UNet preset 'tinny'" in err and "python -m synth.train" in err and "failed (exit status 2)" in err
    assert not samples.exists()
