"""``python -m dermkit.data`` on the demo data: the table, split.csv, split.json and run records."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from dermkit.data.__main__ import main
from dermkit.data.splits import SplitTable


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, flat(captured.out), flat(captured.err)


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_writes_split_files(demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "--data", "demo", "--out", str(out), f"data.cache_dir={demo_cache}")
    assert status == 0
    with (out / "split.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image_id", "lesion_id", "label", "split", "min_fraction"]
        rows = list(reader)
    assert len(rows) == 1200 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert all((r["min_fraction"] == "") == (r["split"] != "train") for r in rows)
    meta = json.loads((out / "split.json").read_text())
    assert meta["seed"] == 0
    assert meta["hash"] == hashlib.sha256((out / "split.csv").read_bytes()).hexdigest()[:16]
    assert SplitTable.load(out / "split.csv").hash == meta["hash"]
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["split_hash"] == meta["hash"] and (out / "config.yaml").is_file()
    for word in ("train", "val", "test", "images", "lesions", "total", "nested label fraction", "vasc", meta["hash"]):
        assert word in stdout


def test_seed_flag_changes_the_split(demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hashes = []
    for seed in ("0", "0", "3"):
        out = tmp_path / f"out{len(hashes)}"
        run(capsys, "--out", str(out), "--seed", seed, f"data.cache_dir={demo_cache}")
        hashes.append(json.loads((out / "split.json").read_text())["hash"])
    assert hashes[0] == hashes[1] != hashes[2]


def test_skipped_files_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    data = tmp_path / "data"
    for label in ("mel", "nv"):
        for i in range(4):
            (data / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 12), (40 * i, 80, 120)).save(data / label / f"{label}{i}.png")
    (data / "nv" / "broken.png").write_bytes(b"")
    status, _, err = run(capsys, "--data", "imagefolder", "--root", str(data), "--out", str(tmp_path / "out"),
                         "--skip-bad", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=8")
    assert status == 0 and "nv/broken" in err and "empty" in err
    assert "nv/broken" not in (tmp_path / "out" / "split.csv").read_text()


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--data", "ham10000", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "does not exist" in flat(capsys.readouterr().err)
    with pytest.raises(SystemExit) as exc:
        main(["data.nmae=demo"])
    assert exc.value.code == 2 and "data.name" in flat(capsys.readouterr().err)
