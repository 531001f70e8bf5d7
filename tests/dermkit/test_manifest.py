"""The synthetic-manifest format: byte-stable files, strict and minimal readers, header checks, the split rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dermkit.errors import DermkitError
from dermkit.manifest import (
    COLUMNS,
    HEADER_FIELDS,
    MANIFEST_CSV,
    MANIFEST_JSON,
    ManifestRow,
    check_manifest_split,
    generator_header,
    manifest_csv,
    read_header,
    read_manifest,
    read_manifest_rows,
    require_header,
    write_header,
    write_manifest,
)

# A manifest.csv and manifest.json as synth.generate has always written them.
EXISTING_CSV = ("file,class,seed,steps,guidance,model_hash,split_hash\n"
                "mel/mel_000000.png,mel,8141418237745412096,50,3.0,3f2a,0123456789abcdef\n"
                "df/df_000001.png,df,77,50,3.0,3f2a,0123456789abcdef\n")
EXISTING_JSON = """{
  "model": "/runs/synth/ham",
  "model_hash": "3f2a",
  "split_hash": "0123456789abcdef",
  "label_fraction": 0.1,
  "classes": [
    "akiec",
    "df"
  ],
  "image_size": 32,
  "settings": {
    "model_hash": "3f2a",
    "sampler": "ddim",
    "steps": 50,
    "guidance": 3.0,
    "seed": 0
  }
}
"""
ROWS = [ManifestRow("mel/mel_000000.png", "mel", 8141418237745412096, 50, 3.0, "3f2a", "0123456789abcdef"),
        ManifestRow("df/df_000001.png", "df", 77, 50, 3.0, "3f2a", "0123456789abcdef")]


def test_existing_manifests_read_and_write_back_byte_for_byte(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_CSV).write_text(EXISTING_CSV)
    assert read_manifest(tmp_path) == ROWS
    out = tmp_path / "again"
    out.mkdir()
    write_manifest(out, ROWS)
    assert (out / MANIFEST_CSV).read_bytes() == EXISTING_CSV.encode()
    settings = {"model_hash": "3f2a", "sampler": "ddim", "steps": 50, "guidance": 3.0, "seed": 0}
    header = generator_header("/runs/synth/ham", "3f2a", "0123456789abcdef", 0.1, ("akiec", "df"), 32, settings)
    assert list(header) == list(HEADER_FIELDS)
    write_header(out, header)
    assert (out / MANIFEST_JSON).read_text() == EXISTING_JSON
    assert read_header(out) == header
    assert not list(out.glob("*.partial"))  # atomic writes leave no temporary file


def test_no_manifest_yet_is_empty_and_no_header_is_none(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == [] and read_header(tmp_path) is None


def test_the_typed_reader_needs_every_column_and_numbers(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_CSV).write_text("file,class,split_hash\nx.png,mel,abc\n")
    with pytest.raises(DermkitError, match=r"lacks the column\(s\) seed, steps, guidance, model_hash"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_CSV).write_text(",".join(COLUMNS) + "\nx.png,mel,not-a-seed,50,3.0,h,s\n")
    with pytest.raises(DermkitError, match="malformed row"):
        read_manifest(tmp_path)


def test_readers_of_other_stages_need_only_file_class_and_split_hash(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_CSV).write_text("file,class,split_hash\nx.png,mel,abc\n")
    assert read_manifest_rows(tmp_path / MANIFEST_CSV) == [{"file": "x.png", "class": "mel", "split_hash": "abc"}]
    (tmp_path / MANIFEST_CSV).write_text("path,label\nx.png,mel\n")
    with pytest.raises(DermkitError, match=r"lacks the column\(s\) file, class, split_hash"):
        read_manifest_rows(tmp_path / MANIFEST_CSV)


def test_a_manifest_is_named_by_its_csv_or_its_folder(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_CSV).write_text(EXISTING_CSV)
    assert manifest_csv(tmp_path, "synth.manifest") == manifest_csv(tmp_path / MANIFEST_CSV, "x") == tmp_path / MANIFEST_CSV
    with pytest.raises(DermkitError, match=re.escape(f"synth.manifest={tmp_path / 'nowhere'}: no manifest.csv there")):
        manifest_csv(tmp_path / "nowhere", "synth.manifest")


def test_bad_and_incomplete_headers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="has no manifest.json: pass --synthetic"):
        require_header(tmp_path, ["image_size"], "--synthetic")
    (tmp_path / MANIFEST_JSON).write_text('{"split_hash": "abc"}')
    assert require_header(tmp_path, ["split_hash"], "--synthetic") == {"split_hash": "abc"}
    with pytest.raises(DermkitError, match="lacks model_hash, image_size"):
        require_header(tmp_path, ["model_hash", "split_hash", "image_size"], "--synthetic")
    (tmp_path / MANIFEST_JSON).write_text("[1, 2]")
    with pytest.raises(DermkitError, match="not a JSON object"):
        read_header(tmp_path)
    (tmp_path / MANIFEST_JSON).write_text("{oops")
    with pytest.raises(DermkitError, match="not valid JSON"):
        read_header(tmp_path)


def test_split_of_rows_and_header_must_be_the_runs(tmp_path: Path) -> None:
    csv_path = tmp_path / MANIFEST_CSV
    csv_path.write_text(EXISTING_CSV)
    check_manifest_split(csv_path, [r.split_hash for r in ROWS], "0123456789abcdef")  # no header: rows decide
    with pytest.raises(DermkitError, match="split hash 0123456789abcdef there, ffff in this run"):
        check_manifest_split(csv_path, [r.split_hash for r in ROWS], "ffff")
    (tmp_path / MANIFEST_JSON).write_text('{"split_hash": "eeee"}')
    with pytest.raises(DermkitError, match="split hash eeee there, 0123456789abcdef in this run.*Its generator"):
        check_manifest_split(csv_path, [r.split_hash for r in ROWS], "0123456789abcdef")
