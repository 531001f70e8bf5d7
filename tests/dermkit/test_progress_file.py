"""progress.json: written by every training stage's trainer, read without ever failing a display."""

from __future__ import annotations

from pathlib import Path

from dermkit.progress_file import PROGRESS_FILE, read_progress, write_progress
from tests.dermkit.test_trainer import fit


def test_trainer_writes_steps_done_of_the_planned_total(tmp_path: Path) -> None:
    fit(tmp_path, epochs=2, resume=False)  # 16 samples in batches of 4: 4 optimiser steps an epoch
    progress = read_progress(tmp_path)
    assert progress is not None and (progress.done, progress.total, progress.unit) == (8, 8, "steps")
    fit(tmp_path, epochs=3, resume=True)
    assert (read_progress(tmp_path).done, read_progress(tmp_path).total) == (12, 12)


def test_round_trip_and_unreadable_files(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    write_progress(tmp_path / "run", 3, 10, "images")
    progress = read_progress(tmp_path / "run")
    assert progress is not None and (progress.done, progress.total, progress.unit) == (3, 10, "images")
    assert not list((tmp_path / "run").glob("*.tmp"))
    (tmp_path / "run" / PROGRESS_FILE).write_text('{"done": 3')  # cut short
    assert read_progress(tmp_path / "run") is None
    (tmp_path / "run" / PROGRESS_FILE).write_text('{"done": 3}')  # keys missing
    assert read_progress(tmp_path / "run") is None
