"""Replaying validation cadences on a run's per-epoch validation log (bench.val_cadence)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench.probes.val_cadence import Pick, main, read_curve, replay
from dermkit.errors import DermkitError

CURVE = {0: 0.1, 1: 0.3, 2: 0.2, 3: 0.25, 4: 0.3, 5: 0.28}


def _run(folder: Path, curve: dict[int, float]) -> Path:
    """A run folder whose logs/metrics.csv logs training loss rows and one validation row per epoch in ``curve``."""
    (folder / "logs").mkdir(parents=True)
    with (folder / "logs" / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["epoch", "step", "train/loss", "val/balanced_accuracy"])
        writer.writeheader()
        for epoch, score in curve.items():
            writer.writerow({"epoch": epoch, "step": 2 * epoch + 1, "train/loss": 1.0, "val/balanced_accuracy": ""})
            writer.writerow({"epoch": epoch, "step": 2 * epoch + 1, "train/loss": "", "val/balanced_accuracy": score})
    return folder


def test_replay_picks_the_first_best_validated_epoch(tmp_path: Path) -> None:
    curve = read_curve(_run(tmp_path / "run", CURVE))
    assert curve == CURVE
    assert replay(curve, 1, 0.0) == Pick(6, 1, 0.3)  # epochs 1 and 4 tie: the first, as the checkpoint keeps it
    assert replay(curve, 2, 0.0) == Pick(3, 1, 0.3)  # epochs 1, 3, 5
    assert replay(curve, 3, 0.0) == Pick(2, 5, 0.28)  # epochs 2, 5: the best epoch is not among them
    assert replay(curve, 1, 0.5) == Pick(3, 4, 0.3)  # epochs 3, 4, 5


def test_a_run_that_skipped_epochs_cannot_be_replayed(tmp_path: Path) -> None:
    curve = read_curve(_run(tmp_path / "run", {2: 0.2, 5: 0.3}))
    with pytest.raises(DermkitError, match="validated every epoch"):
        replay(curve, 1, 0.0)
    with pytest.raises(DermkitError, match="logs/metrics.csv"):
        read_curve(tmp_path / "nothing")


def test_main_prints_every_cadence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_run(tmp_path / "run-s0", CURVE)), "--every", "1", "3", "--start", "0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "run-s0" in out and "-0.0200" in out  # every 3 from 0: 0.28 against 0.3
