"""The writer's side of a synthetic folder: per-image seeds, atomic PNGs, one generator per folder.

The file format itself is tested in tests/dermkit/test_manifest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermkit.errors import DermkitError
from dermkit.manifest import ManifestRow, read_manifest, write_header, write_manifest
from synth.manifest import check_same_generator, image_file, image_index, image_seed, remove_partials, write_png


def test_generated_rows_round_trip_with_their_indices(tmp_path: Path) -> None:
    rows = [ManifestRow(image_file("mel", i), "mel", image_seed(0, "mel", i), 50, 3.0, "abc", "split") for i in range(3)]
    write_manifest(tmp_path, rows)
    assert read_manifest(tmp_path) == rows
    assert [image_index(r.file) for r in rows] == [0, 1, 2]
    assert not list(tmp_path.glob("*.partial"))


def test_seeds_depend_on_seed_class_and_index_only() -> None:
    assert image_seed(0, "mel", 1) == image_seed(0, "mel", 1)
    assert len({image_seed(0, "mel", 1), image_seed(1, "mel", 1), image_seed(0, "df", 1), image_seed(0, "mel", 2)}) == 4


def test_png_write_is_atomic_and_partials_are_removed(tmp_path: Path) -> None:
    write_png(tmp_path / "mel" / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "mel" / "b.png.partial").write_bytes(b"half a png")
    assert remove_partials(tmp_path) == 1
    assert sorted(p.name for p in (tmp_path / "mel").iterdir()) == ["a.png"]


def test_folder_of_another_generator_is_refused(tmp_path: Path) -> None:
    write_header(tmp_path, {"model_hash": "aaaa"})
    check_same_generator(tmp_path, "aaaa", [])
    with pytest.raises(DermkitError, match="another generator"):
        check_same_generator(tmp_path, "bbbb", [])

