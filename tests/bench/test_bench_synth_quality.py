"""bench.synth_quality: train, generate and evaluate in one command; the report ranks every class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.synth_quality import main


def test_one_command_writes_report_table_and_figure(tmp_path: Path, demo_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    out, samples, figure = tmp_path / "gen", tmp_path / "samples_g1", tmp_path / "grid.png"
    argv = ["--out", str(out), "--samples", str(samples), "--preset", "tiny", "--data", "demo",
            "--image-size", "16", "--steps", "2", "--batch-size", "8", "--warmup", "1", "--classes", "mel", "vasc",
            "--n", "2", "--gen-batch-size", "2", "--sample-steps", "2", "--guidance", "1.0", "--figure", str(figure)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny UNet on a loaded 2-core machine: one thread is far faster
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)

    report = json.loads((samples / "quality.json").read_text())
    assert set(report["classes"]) == {"mel", "vasc"}
    for klass, metrics in report["classes"].items():
        assert len(metrics["to_class"]) == 7  # ranked against every training class
        assert 1 <= metrics["own_rank_kid"] <= 7 and metrics["held_out_real"]["n"] == 2
    table = (samples / "quality.md").read_text()
    assert "| mel (melanoma) | 2 |" in table and "| vasc (vascular lesion) | 2 |" in table
    grids = [Image.open(samples / "eval" / "grids" / f"{c}.png") for c in ("mel", "vasc")]
    assert Image.open(figure).height == sum(g.height for g in grids)
    assert not (out / "samples").exists()  # the report went where --samples said
