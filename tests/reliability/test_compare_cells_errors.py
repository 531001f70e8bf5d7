"""``bench.compare_cells`` pairs explicitly and checks every path before any work (issue 42).

Two mistakes that used to pass unseen or end in a traceback: a seed on one side only was dropped
without a word, and an ``--out`` that is a folder raised ``IsADirectoryError`` after the whole
comparison had run. Each is run as the real command (``main(argv)`` in this process).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench.report.compare_cells import main

TRUE = ["mel"] * 6 + ["nv"] * 10


def write_cell(folder: Path, seed: int, mel_right: int = 3) -> Path:
    """A finished cell of ``seed``: its first ``mel_right`` melanomas and every nevus right."""
    predicted = [t if t == "nv" or i < mel_right else "nv" for i, t in enumerate(TRUE)]
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "true", "predicted"])
        writer.writerows([f"ISIC_{i:05d}", t, p] for i, (t, p) in enumerate(zip(TRUE, predicted)))
    recall = {"mel": mel_right / 6, "nv": 1.0}
    (folder / "metrics.json").write_text(json.dumps({"balanced_accuracy": sum(recall.values()) / 2, "accuracy": 0.0,
                                                     "per_class": {c: {"recall": r} for c, r in recall.items()},
                                                     "seed": seed}))
    return folder


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the command expecting exit status 2; returns its message, checked to be one line without a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    out = "".join(capsys.readouterr())
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


def test_a_seed_on_one_side_only_is_named_and_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = [write_cell(tmp_path / "a0", 0, 5), write_cell(tmp_path / "a1", 1, 5)]
    against = [write_cell(tmp_path / "b0", 0, 2)]
    out = tmp_path / "compare.md"
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--out", str(out), "--n-bootstrap", "200"])
    text = out.read_text()
    assert "Seeds compared: 0;" in text
    assert f"Unpaired, left out (no cell of the same seed on the other side): `--cells` seed 1 (`{cells[1]}`)." in text
    assert "Unpaired, left out" in "".join(capsys.readouterr())  # said on the console too, not only in the file


def test_comparing_no_seed_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = [write_cell(tmp_path / "a0", 0), write_cell(tmp_path / "a1", 1)]
    message = one_line_error(capsys, ["--cells", *map(str, cells), "--against", str(write_cell(tmp_path / "b2", 2))])
    assert "No seed in common: --cells has seeds [0, 1], --against [2]" in message


def test_out_that_is_a_folder_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells, against = write_cell(tmp_path / "a0", 0), write_cell(tmp_path / "b0", 0)
    folder = tmp_path / "reports"
    folder.mkdir()
    message = one_line_error(capsys, ["--cells", str(cells), "--against", str(against), "--out", str(folder)])
    assert f"--out {folder} is a folder" in message
    assert list(folder.iterdir()) == []
    # before any work: a cell that the comparison would fail on is not even read
    (against / "predictions.csv").write_text("image_id,true\n")
    message = one_line_error(capsys, ["--cells", str(cells), "--against", str(against), "--out", str(folder)])
    assert f"--out {folder} is a folder" in message


@pytest.mark.parametrize("case", ["plan-out-folder", "out-under-a-file", "missing-against", "cell-without-predictions",
                                  "missing-plan"])
def test_every_path_is_checked_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    cells, against = write_cell(tmp_path / "a0", 0), write_cell(tmp_path / "b0", 0)
    (tmp_path / "plan.json").mkdir()
    (tmp_path / "a-file").write_text("")
    if case == "cell-without-predictions":
        (against / "predictions.csv").unlink()
    extra, expected = {
        "plan-out-folder": (["--plan-out", str(tmp_path / "plan.json")], "is a folder; give a file name"),
        "out-under-a-file": (["--out", str(tmp_path / "a-file" / "compare.md")], "is a file, not a folder"),
        "missing-against": (["--against", str(tmp_path / "nowhere")], f"--against {tmp_path / 'nowhere'} is not a "
                            "folder"),
        "cell-without-predictions": ([], f"--against {against} has no predictions.csv"),
        "missing-plan": (["--plan", str(tmp_path / "plan.md")], "--plan"),
    }[case]
    argv = ["--cells", str(cells), *(["--against", str(against)] if case != "missing-against" else []), *extra]
    assert expected in one_line_error(capsys, argv)
