"""Every registered reader on fixtures written here, every bad input, and image-mode conversion."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermkit.config import DataConfig
from dermkit.data.cache import cache_arrays, cache_images
from dermkit.data.demo import ensure_demo_dataset
from dermkit.data.images import load_rgb
from dermkit.data.prepare import prepare_data
from dermkit.data.readers import READERS, _load_readers, read_source
from dermkit.data.records import ImageSource
from dermkit.errors import DermkitError


def write_image(path: Path, colour: tuple[int, int, int] = (120, 80, 60), size: tuple[int, int] = (20, 16)) -> Path:
    """A small solid-colour image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- fixtures: one builder per reader, returning (root, {image_id: label}) -------------------------

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def make_ham10000(tmp: Path) -> tuple[Path, dict[str, str | None]]:
    rows = [["HAM_1", "ISIC_1", "mel"], ["HAM_1", "ISIC_2", "mel"], ["HAM_2", "ISIC_3", "nv"],
            ["HAM_3", "ISIC_4", "bkl"]]
    for _, image_id, _ in rows:
        write_image(tmp / "images" / f"{image_id}.jpg")
    write_csv(tmp / "HAM10000_metadata.csv", HAM_HEADER, [[*r, "histo", 50, "male", "back"] for r in rows])
    return tmp, {r[1]: r[2] for r in rows}


ISIC2018_COLUMNS = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ISIC2019_COLUMNS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def one_hot(columns: list[str], marked: str) -> list[str]:
    return ["1.0" if c == marked else "0.0" for c in columns]


def make_isic2018(tmp: Path) -> tuple[Path, dict[str, str | None]]:
    labels = {"ISIC_0000001": "MEL", "ISIC_0000002": "AKIEC", "ISIC_0000003": "VASC"}
    for image_id in labels:
        write_image(tmp / "ISIC2018_Task3_Training_Input" / f"{image_id}.jpg")
    write_csv(tmp / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", *ISIC2018_COLUMNS],
              [[i, *one_hot(ISIC2018_COLUMNS, c)] for i, c in labels.items()])
    return tmp, {"ISIC_0000001": "mel", "ISIC_0000002": "akiec", "ISIC_0000003": "vasc"}


def make_isic2019(tmp: Path, unk: bool = False) -> tuple[Path, dict[str, str | None]]:
    labels = {"ISIC_0000010": "AK", "ISIC_0000011": "SCC", "ISIC_0000012": "NV", "ISIC_0000013": "NV"}
    if unk:
        labels["ISIC_0000014"] = "UNK"
    for image_id in labels:
        write_image(tmp / "ISIC_2019_Training_Input" / f"{image_id}.png")
    write_csv(tmp / "ISIC_2019_Training_GroundTruth.csv", ["image", *ISIC2019_COLUMNS],
              [[i, *one_hot(ISIC2019_COLUMNS, c)] for i, c in labels.items()])
    write_csv(tmp / "ISIC_2019_Training_Metadata.csv", ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
              [["ISIC_0000012", 40, "back", "BCN_1", "male"], ["ISIC_0000013", 40, "back", "BCN_1", "male"],
               ["ISIC_0000010", 70, "face", "", "female"]])
    return tmp, {"ISIC_0000010": "akiec", "ISIC_0000011": "scc", "ISIC_0000012": "nv", "ISIC_0000013": "nv"}


def make_imagefolder(tmp: Path) -> tuple[Path, dict[str, str | None]]:
    write_image(tmp / "melanoma" / "a.jpg")
    write_image(tmp / "MEL" / "b.jpeg")  # a second alias of the same class
    write_image(tmp / "nv" / "deeper" / "c.png")
    write_image(tmp / "AK" / "d.bmp")
    write_image(tmp / "df" / "e.tiff")
    return tmp, {"melanoma/a": "mel", "MEL/b": "mel", "nv/deeper/c": "nv", "AK/d": "akiec", "df/e": "df"}


def make_medmnist(tmp: Path, labels: dict[str, list[int]] | None = None) -> tuple[Path, dict[str, str | None]]:
    labels = labels or {"train": [0, 4, 5, 6], "val": [1], "test": [2, 3]}
    rng = np.random.default_rng(0)
    tmp.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, values in labels.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (len(values), 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array(values, dtype=np.uint8)[:, None]
    np.savez(tmp / "dermamnist_28.npz", **arrays)
    names = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    return tmp, {f"{s}_{i:05d}": names[v] for s, values in labels.items() for i, v in enumerate(values) if v < len(names)}


def make_folder(tmp: Path) -> tuple[Path, dict[str, str | None]]:
    write_image(tmp / "x.jpg")
    write_image(tmp / "sub" / "y.PNG")
    write_image(tmp / "sub" / "deeper" / "z.tif")
    (tmp / "notes.txt").write_text("not an image")
    return tmp, {"x": None, "sub/y": None, "sub/deeper/z": None}


def make_demo(tmp: Path) -> tuple[Path, dict[str, str | None]]:
    root = ensure_demo_dataset(tmp, n_images=168, seed=1)
    with (root / "HAM10000_metadata.csv").open() as handle:
        return root, {row["image_id"]: row["dx"] for row in csv.DictReader(handle)}


BUILDERS: dict[str, Callable[[Path], tuple[Path, dict[str, str | None]]]] = {
    "ham10000": make_ham10000, "isic": make_isic2018, "imagefolder": make_imagefolder,
    "medmnist": make_medmnist, "folder": make_folder, "demo": make_demo,
}


def test_every_registered_reader_has_a_fixture() -> None:
    _load_readers()
    assert set(READERS) == set(BUILDERS)


def decode_all(source: ImageSource, cache_dir: Path) -> np.ndarray:
    """Decode every record through the cache, as prepare_data does; (N, 16, 16, 3)."""
    if source.arrays is not None:
        return cache_arrays(source.arrays[[r.array_index for r in source.records]], 16, cache_dir, "test").open()
    return cache_images([r.path for r in source.records], 16, cache_dir).open()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reader_reads_its_fixture(name: str, tmp_path: Path) -> None:
    root, expected = BUILDERS[name](tmp_path / "data")
    source = read_source(name, root)
    assert {r.image_id: r.label for r in source.records} == expected
    assert [r.image_id for r in source.records] == sorted(expected)
    assert source.classes == tuple(c for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "scc")
                                   if c in expected.values())
    assert source.skipped == []
    pixels = decode_all(source, tmp_path / "cache")
    assert pixels.shape == (len(expected), 16, 16, 3)


def test_isic2019_lesion_ids_from_metadata(tmp_path: Path) -> None:
    root, expected = make_isic2019(tmp_path)
    source = read_source("isic", root)
    assert {r.image_id: r.label for r in source.records} == expected
    assert source.classes == ("akiec", "nv", "scc")
    lesions = {r.image_id: r.lesion_id for r in source.records}
    assert lesions == {"ISIC_0000010": None, "ISIC_0000011": None, "ISIC_0000012": "BCN_1", "ISIC_0000013": "BCN_1"}


def test_isic_unk_row_is_an_error_unless_skip_bad(tmp_path: Path) -> None:
    root, expected = make_isic2019(tmp_path, unk=True)
    with pytest.raises(DermkitError, match=r"ISIC_0000014.*UNK.*skip_bad"):
        read_source("isic", root)
    source = read_source("isic", root, skip_bad=True)
    assert {r.image_id for r in source.records} == set(expected)
    assert [name for name, _ in source.skipped] == ["ISIC_0000014"]


def test_isic_several_ground_truth_files(tmp_path: Path) -> None:
    make_isic2018(tmp_path)
    write_csv(tmp_path / "ISIC2018_Task3_Validation_GroundTruth.csv", ["image", "MEL"], [])
    with pytest.raises(DermkitError, match="Several ground-truth CSVs"):
        read_source("isic", tmp_path)


def test_medmnist_keeps_pixels_in_record_order(tmp_path: Path) -> None:
    root, _ = make_medmnist(tmp_path)
    source = read_source("medmnist", root / "dermamnist_28.npz")
    with np.load(root / "dermamnist_28.npz") as npz:
        for record in source.records:
            split, index = record.image_id.split("_")
            assert record.path is None and record.lesion_id is None
            np.testing.assert_array_equal(source.arrays[record.array_index], npz[f"{split}_images"][int(index)])


def test_medmnist_grayscale_arrays_become_rgb(tmp_path: Path) -> None:
    np.savez(tmp_path / "dermamnist.npz", train_images=np.full((2, 8, 8), 7, np.uint8),
             train_labels=np.array([[0], [6]]))
    source = read_source("medmnist", tmp_path)
    assert source.arrays.shape == (2, 8, 8, 3) and (source.arrays == 7).all()


# --- bad input -----------------------------------------------------------------------------------

def test_missing_image_is_named_and_skippable(tmp_path: Path) -> None:
    root, _ = make_ham10000(tmp_path)
    (root / "images" / "ISIC_3.jpg").unlink()
    with pytest.raises(DermkitError, match=r"ISIC_3.*skip_bad"):
        read_source("ham10000", root)
    source = read_source("ham10000", root, skip_bad=True)
    assert "ISIC_3" not in {r.image_id for r in source.records}
    assert [name for name, _ in source.skipped] == ["ISIC_3"]


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A zero-byte file, a truncated JPEG and a text file named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    whole = write_image(folder / "truncated.jpg", size=(64, 64)).read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    text = folder / "text.jpg"
    text.write_text("this is not an image\n")
    return {"empty": empty, "truncated": folder / "truncated.jpg", "text": text}


@pytest.mark.parametrize(("kind", "message"), [
    ("empty", "empty"), ("truncated", "truncated or corrupt"), ("text", "not in a format"),
])
def test_bad_image_file_error_names_the_file(tmp_path: Path, kind: str, message: str) -> None:
    path = write_bad_images(tmp_path)[kind]
    with pytest.raises(DermkitError, match=message) as err:
        load_rgb(path)
    assert str(path) in str(err.value) and "skip_bad" in str(err.value)
    with pytest.raises(DermkitError, match=message):
        cache_images([path], 16, tmp_path / "cache")


def test_missing_image_file_for_load_rgb(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="does not exist") as err:
        load_rgb(tmp_path / "gone.jpg")
    assert "gone.jpg" in str(err.value)


def test_skip_bad_skips_and_lists_unreadable_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = write_bad_images(data)
    write_image(data / "good.png")
    cfg = DataConfig(name="folder", root=str(data), cache_dir=str(tmp_path / "cache"), image_size=16)
    with pytest.raises(DermkitError, match="data.skip_bad=true"):
        prepare_data(cfg)
    cfg.skip_bad = True
    prepared = prepare_data(cfg)
    assert sorted(name for name, _ in prepared.source.skipped) == sorted(p.stem for p in bad.values())
    assert prepared.split.image_ids == ["good"]
    assert prepared.images[prepared.indices("all")].shape == (1, 16, 16, 3)


def test_csv_without_needed_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "HAM10000_metadata.csv", ["lesion_id", "image_id"], [["HAM_1", "ISIC_1"]])
    with pytest.raises(DermkitError, match=r"HAM10000_metadata.csv lacks the column\(s\) dx"):
        read_source("ham10000", tmp_path)
    isic = tmp_path / "isic"
    isic.mkdir()
    write_csv(isic / "ISIC_2019_Training_GroundTruth.csv", ["name", "MEL"], [["ISIC_1", "1.0"]])
    with pytest.raises(DermkitError, match=r"GroundTruth.csv lacks the column\(s\) image"):
        read_source("isic", isic)


def test_medmnist_without_needed_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "dermamnist.npz", train_images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DermkitError, match="lacks the key.*train_labels"):
        read_source("medmnist", tmp_path)


def test_label_outside_vocabulary(tmp_path: Path) -> None:
    root, _ = make_ham10000(tmp_path / "ham")
    text = (root / "HAM10000_metadata.csv").read_text().replace(",bkl,", ",melanomma,")
    (root / "HAM10000_metadata.csv").write_text(text)
    with pytest.raises(DermkitError, match=r"ISIC_4.*melanomma.*melanoma"):
        read_source("ham10000", root)

    write_image(tmp_path / "folders" / "nevvus" / "a.jpg")
    with pytest.raises(DermkitError, match=r"nevvus.*Did you mean: nevus"):
        read_source("imagefolder", tmp_path / "folders")

    isic = tmp_path / "isic"
    isic.mkdir()
    write_csv(isic / "ISIC2018_Task3_Training_GroundTruth.csv", ["image", "MEL", "NVV"], [["ISIC_1", "1.0", "0.0"]])
    with pytest.raises(DermkitError, match=r"column 'NVV'"):
        read_source("isic", isic)

    root, _ = make_medmnist(tmp_path / "mnist", {"train": [0, 9, 5]})
    with pytest.raises(DermkitError, match=r"train_00001: label 9"):
        read_source("medmnist", root)
    assert [name for name, _ in read_source("medmnist", root, skip_bad=True).skipped] == ["train_00001"]


@pytest.mark.parametrize("name", ["folder", "imagefolder", "ham10000", "isic", "medmnist"])
def test_empty_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(DermkitError, match=str(tmp_path)):
        read_source(name, tmp_path)


def test_imagefolder_empty_class_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "mel" / "a.jpg")
    (tmp_path / "nv").mkdir()
    with pytest.raises(DermkitError, match=r"nv holds no images"):
        read_source("imagefolder", tmp_path)
    source = read_source("imagefolder", tmp_path, skip_bad=True)
    assert source.classes == ("mel",) and len(source.skipped) == 1


def test_missing_root(tmp_path: Path) -> None:
    for name in sorted(BUILDERS):
        if name == "demo":
            continue  # the demo reader is handed a generated folder, never a user path
        with pytest.raises(DermkitError, match="does not exist"):
            read_source(name, tmp_path / "nowhere")


# --- image modes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "value", "suffix", "expected"), [
    ("CMYK", (0, 0, 0, 0), ".jpg", (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), ".tif", (255, 0, 0)),
    ("RGBA", (10, 20, 30, 0), ".png", (255, 255, 255)),  # transparent -> white background
    ("RGBA", (10, 20, 30, 255), ".png", (10, 20, 30)),
    ("L", 100, ".png", (100, 100, 100)),
    ("I;16", 65535, ".png", (255, 255, 255)),
    ("I;16", 32896, ".png", (128, 128, 128)),
])
def test_image_modes_become_rgb(tmp_path: Path, mode: str, value: object, suffix: str,
                                expected: tuple[int, int, int]) -> None:
    path = tmp_path / f"image{suffix}"
    Image.new(mode, (8, 8), value).save(path)
    image = load_rgb(path)
    assert image.mode == "RGB"
    pixel = np.asarray(image)[4, 4]
    assert np.abs(pixel.astype(int) - expected).max() <= 3  # JPEG rounding
