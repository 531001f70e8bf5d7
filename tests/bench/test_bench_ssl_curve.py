"""bench.ssl_curve on a real (tiny) pretraining run of the demo data: snapshots in, curve out."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.probes.ssl_curve import main, monitor_curve, snapshots

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_curve_of_a_snapshotted_run_has_one_point_per_snapshot_and_a_random_baseline(
        demo_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ssl.pretrain", "--backbone", "tiny_cnn", "--image-size", "32",
                    "--batch-size", "16", "--workers", "0", "--epochs", "2", "--out", str(run),
                    f"data.cache_dir={demo_cache}", "trainer.accelerator=cpu", "monitor.max_bank=128",
                    "snapshot_every_n_epochs=1"], cwd=REPO, check=True, capture_output=True)
    assert [epoch for epoch, _ in snapshots(run)] == [1, 2]
    assert [epoch for epoch, _ in monitor_curve(run)] == [1, 2]

    out = tmp_path / "curve"
    assert main(["--run", str(run), "--out", str(out), "--random-seeds", "0", "1",
                 "--evaluate-args", f"probe_epochs=5 data.cache_dir={demo_cache}"]) == 0
    with (out / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["knn"]) <= 1.0 and 0.0 <= float(r["linear"]) <= 1.0 for r in rows)
    summary = json.loads((out / "curve.json").read_text())
    assert summary["random"]["knn"]["seeds"] == [0, 1]
    assert summary["random"]["linear"]["low"] <= summary["random"]["linear"]["mean"] <= summary["random"]["linear"]["high"]
    assert (out / "curve.png").stat().st_size > 10_000
    # A second call reuses every evaluation instead of running it again.
    stamps = {p: p.stat().st_mtime for p in run.glob("curve/*/metrics.json")}
    assert len(stamps) == 4
    assert main(["--run", str(run), "--out", str(out), "--random-seeds", "0", "1",
                 "--evaluate-args", f"probe_epochs=5 data.cache_dir={demo_cache}"]) == 0
    assert {p: p.stat().st_mtime for p in run.glob("curve/*/metrics.json")} == stamps


def test_a_run_without_snapshots_is_an_error_that_says_how_to_make_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--run", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "snapshot_every_n_epochs" in capsys.readouterr().err
