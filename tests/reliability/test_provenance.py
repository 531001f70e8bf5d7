"""Provenance and data integrity (issue 16): what must never leak cannot, and nothing is silently lost.

Each case is a real command (the stage's ``main``, or a subprocess) on the demo data, a small copy of
HAM10000's layout, or a tiny generator:

- a synthetic manifest row that resolves outside its folder, or to an image of the dataset, is refused;
- a dataset listing one image id twice is refused, with the ids;
- a generator trained on more labelled images than a fine-tune may use is refused for it;
- ``synth.generate`` into a folder made with other sampler settings is refused, naming the keys;
- two ``synth.generate`` processes writing into one folder lose no manifest rows;
- the image cache does not carry a ``skip_bad`` run's skips into a strict run, skips keep their real
  reason, and run.json counts the images used.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dermkit.data.__main__ import main as data_main
from dermkit.data.demo import ensure_demo_dataset
from dermkit.manifest import read_manifest
from finetune.train import main as finetune_main
from synth.generate import main as generate_main
from synth.train import main as train_main
from tests.conftest import REPO_ROOT
from tests.finetune.helpers import write_manifest
from tests.synth.conftest import tiny_train_argv

IMAGE_SIZE = 16


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone."""
    return " ".join(text.split())


def run_main(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run an entry point; its exit status and what it printed (stdout and stderr, unwrapped)."""
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return int(status or 0), flat(captured.out + captured.err)


@pytest.fixture(scope="module")
def demo_split(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data's split written by ``python -m dermkit.data`` (split.csv)."""
    out = tmp_path_factory.mktemp("split")
    assert data_main(["--data", "demo", "--out", str(out), "--image-size", str(IMAGE_SIZE),
                      f"data.cache_dir={demo_cache}"]) == 0
    return out / "split.csv"


def split_rows(split_csv: Path) -> list[dict[str, str]]:
    with split_csv.open(newline="") as handle:
        return list(csv.DictReader(handle))


def demo_image(demo_cache: Path, image_id: str) -> Path:
    root = ensure_demo_dataset(demo_cache)
    return next(p for p in root.rglob(f"{image_id}.*") if p.suffix in (".jpg", ".png"))


def finetune_argv(out: Path, demo_cache: Path, split_csv: Path, manifest: Path, *extra: str) -> list[str]:
    """One training step of tiny_cnn on the demo data with the saved split and a synthetic manifest."""
    return ["--out", str(out), "--manifest", str(manifest), "--backbone", "tiny_cnn", f"data.cache_dir={demo_cache}",
            f"data.image_size={IMAGE_SIZE}", f"data.split_file={split_csv}", "data.batch_size=16",
            "data.num_workers=0", "model.small_stem=true", "trainer.max_epochs=1", "trainer.max_steps=1",
            "trainer.accelerator=cpu", *extra]


def manifest_with_rows(folder: Path, split_hash: str, files: list[str]) -> Path:
    """A synth.generate-style manifest of two honest df PNGs plus rows naming ``files``."""
    manifest = write_manifest(folder, split_hash, {"df": 2}, label_fraction=1.0)
    with manifest.open("a", newline="") as handle:
        writer = csv.writer(handle)
        for file in files:
            writer.writerow([file, "df", 0, 10, 1.0, "test", split_hash])
    return manifest


# --- 1. synthetic manifest rows: inside their folder, never an image of the dataset ----------------

@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_manifest_row_cannot_smuggle_in_a_real_image(kind: str, demo_cache: Path, demo_split: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows = split_rows(demo_split)
    split_hash = json.loads((demo_split.parent / "split.json").read_text())["hash"]
    test_image = demo_image(demo_cache, next(r["image_id"] for r in rows if r["split"] == "test"))
    val_image = demo_image(demo_cache, next(r["image_id"] for r in rows if r["split"] == "val"))
    folder = tmp_path / "synth"
    folder.mkdir()
    if kind == "absolute":  # an absolute path to a test image
        bad = str(test_image)
    elif kind == "dotdot":  # ../ up to a validation image
        bad = os.path.relpath(val_image, folder)
    else:  # a link inside the folder to a test image
        (folder / "df").mkdir()
        (folder / "df" / "linked.png").symlink_to(test_image)
        bad = "df/linked.png"
    manifest = manifest_with_rows(folder, split_hash, [bad])
    status, output = run_main(finetune_main, finetune_argv(tmp_path / "run", demo_cache, demo_split, manifest), capsys)
    assert status == 2, output
    assert str(manifest) in output and "line 4" in output and repr(bad) in output
    assert "outside the manifest's folder" in output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_manifest_row_that_is_a_copy_of_a_test_image_is_refused(demo_cache: Path, demo_split: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rows = split_rows(demo_split)
    split_hash = json.loads((demo_split.parent / "split.json").read_text())["hash"]
    test_image = demo_image(demo_cache, next(r["image_id"] for r in rows if r["split"] == "test"))
    folder = tmp_path / "synth"
    (folder / "df").mkdir(parents=True)
    copy = folder / "df" / f"copied{test_image.suffix}"
    shutil.copyfile(test_image, copy)  # inside the folder, not a link: only its bytes give it away
    manifest = manifest_with_rows(folder, split_hash, [f"df/{copy.name}"])
    status, output = run_main(finetune_main, finetune_argv(tmp_path / "run", demo_cache, demo_split, manifest), capsys)
    assert status == 2, output
    assert "line 4" in output and "same bytes as the dataset image" in output and test_image.name in output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_manifest_row_naming_a_dataset_image_inside_its_folder(demo_cache: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest kept in the dataset folder itself: the row resolves inside it, but is a real image."""
    root = tmp_path / "data"
    source = ensure_demo_dataset(demo_cache)
    (root / "images").mkdir(parents=True)
    metadata = (source / "HAM10000_metadata.csv").read_text().splitlines()
    kept = [metadata[0], *metadata[1:121]]
    (root / "HAM10000_metadata.csv").write_text("\n".join(kept) + "\n")
    for line in kept[1:]:  # copies, not links: the manifest's row must resolve inside its folder
        image = demo_image(demo_cache, line.split(",")[1])
        shutil.copy(image, root / "images" / image.name)
    split_out = tmp_path / "split"
    assert data_main(["--data", "ham10000", "--root", str(root), "--out", str(split_out), "--image-size",
                      str(IMAGE_SIZE), f"data.cache_dir={demo_cache}"]) == 0
    capsys.readouterr()
    split_hash = json.loads((split_out / "split.json").read_text())["hash"]
    image_name = next((root / "images").iterdir()).name
    manifest = manifest_with_rows(root / "images", split_hash, [image_name])
    argv = finetune_argv(tmp_path / "run", demo_cache, split_out / "split.csv", manifest, "data.name=ham10000",
                         f"data.root={root}")
    status, output = run_main(finetune_main, argv, capsys)
    assert status == 2, output
    assert "an image of the dataset" in output and repr(image_name) in output


# --- 2. unique image ids ------------------------------------------------------------------------

@pytest.mark.realdata
def test_metadata_with_a_repeated_image_id_is_refused(ham10000_root: Path, demo_cache: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Twelve real HAM10000 rows, one repeated as another lesion and diagnosis."""
    lines = (ham10000_root / "HAM10000_metadata.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:13]
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    for row in rows:
        image_id = row.split(",")[1]
        real = next(p for folder in ("images", "HAM10000_images_part_1", "HAM10000_images_part_2", ".")
                    for p in [ham10000_root / folder / f"{image_id}.jpg"] if p.is_file())
        (root / "images" / f"{image_id}.jpg").symlink_to(real)
    lesion, image_id, dx, *rest = rows[0].split(",")
    other_dx = "mel" if dx != "mel" else "nv"
    duplicate = ",".join(["HAM_9999999", image_id, other_dx, *rest])
    (root / "HAM10000_metadata.csv").write_text("\n".join([header, *rows, duplicate]) + "\n")
    status, output = run_main(data_main, ["--data", "ham10000", "--root", str(root), "--out", str(tmp_path / "out"),
                                          "--image-size", str(IMAGE_SIZE), f"data.cache_dir={demo_cache}"], capsys)
    assert status == 2, output
    assert "1 image id(s) more than once" in output and image_id in output and other_dx in output
    assert not (tmp_path / "out" / "split.csv").exists()


@pytest.mark.parametrize("reader", ["folder", "imagefolder"])
def test_one_image_id_for_two_files_is_refused(reader: str, demo_cache: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "images"
    for name in ("mel/a.jpg", "mel/a.png", "mel/b.jpg", "nv/c.jpg", "nv/d.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (len(name) * 9, 40, 90)).save(root / name)
    status, output = run_main(data_main, ["--data", reader, "--root", str(root), "--out", str(tmp_path / "out"),
                                          "--image-size", str(IMAGE_SIZE), f"data.cache_dir={demo_cache}"], capsys)
    assert status == 2, output
    assert "mel/a:" in output and "a.jpg" in output and "a.png" in output


# --- 3. a generator's labelled images must be a subset of the fine-tune's --------------------------

@pytest.fixture(scope="module")
def generators(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> dict[float, Path]:
    """Tiny generators (2 steps) trained by synth.train on all training labels and on fraction 0.25."""
    root = tmp_path_factory.mktemp("generators")
    made = {}
    for fraction in (1.0, 0.25):
        out = root / f"f{fraction:g}"
        assert train_main([*tiny_train_argv(out, demo_cache), f"data.fraction={fraction}"]) == 0
        made[fraction] = out
    return made


def generate_into(model: Path, out: Path, *extra: str) -> int:
    try:
        return generate_main(["--model", str(model), "--out", str(out), "--class", "df", "--n", "2", "--steps", "2",
                              "--batch-size", "2", "--device", "cpu", *extra])
    except SystemExit as exit_info:
        return int(exit_info.code or 0)


def test_generator_of_all_labels_is_refused_at_a_smaller_fraction(generators: dict[float, Path], demo_cache: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads((generators[1.0] / "dermkit_generator.json").read_text())
    assert info["label_fraction"] == 1.0
    assert generate_into(generators[1.0], tmp_path / "all") == 0
    assert json.loads((tmp_path / "all" / "manifest.json").read_text())["label_fraction"] == 1.0
    argv = ["--fraction", "0.25", "--backbone", "tiny_cnn", "--manifest", str(tmp_path / "all" / "manifest.csv"),
            "--out", str(tmp_path / "run"), f"data.cache_dir={demo_cache}", f"data.image_size={IMAGE_SIZE}",
            "data.batch_size=16", "data.num_workers=0", "model.small_stem=true", "trainer.max_epochs=1",
            "trainer.max_steps=1",
            "trainer.accelerator=cpu"]
    capsys.readouterr()
    status, output = run_main(finetune_main, argv, capsys)
    assert status == 2, output
    assert "label fraction 1" in output and "data.fraction=0.25" in output and "synth.allow_extra_labels" in output

    # A generator of the same fraction is accepted, and the run records it.
    assert generate_into(generators[0.25], tmp_path / "quarter") == 0
    argv[argv.index("--manifest") + 1] = str(tmp_path / "quarter" / "manifest.csv")
    status, output = run_main(finetune_main, argv, capsys)
    assert status == 0, output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["synthetic"]["label_fraction"] == 0.25


def test_manifest_without_the_record_is_refused_below_fraction_one(demo_cache: Path, demo_split: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    split_hash = json.loads((demo_split.parent / "split.json").read_text())["hash"]
    manifest = write_manifest(tmp_path / "old", split_hash, {"df": 2})  # no manifest.json: an older folder
    argv = finetune_argv(tmp_path / "run", demo_cache, demo_split, manifest, "data.fraction=0.25")
    status, output = run_main(finetune_main, argv, capsys)
    assert status == 2, output
    assert "does not record the label fraction" in output and "python -m synth.generate" in output


# --- 4. a generation folder's sampler settings are fixed by its first run -------------------------

def test_generate_refuses_other_settings_in_the_same_folder(generators: dict[float, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "samples"
    assert generate_into(generators[1.0], out, "--guidance", "2.0", "--seed", "3") == 0
    for flag, value, key in (("--steps", "3", "steps"), ("--guidance", "4.0", "guidance"), ("--seed", "4", "seed"),
                             ("--sampler", "ddpm", "sampler")):
        capsys.readouterr()
        assert generate_into(generators[1.0], out, "--guidance", "2.0", "--seed", "3", flag, value) == 2, key
        output = flat(capsys.readouterr().err)
        assert f"{key}=" in output and "another --out" in output
    assert len(read_manifest(out)) == 2
    assert generate_into(generators[1.0], out, "--guidance", "2.0", "--seed", "3", "--n", "3") == 0  # same: extends
    assert len(read_manifest(out)) == 3 and {r.guidance for r in read_manifest(out)} == {2.0}


# --- 5. concurrent writers of one manifest --------------------------------------------------------

# Both processes reach their first batch, then wait for each other: each has read the folder's
# manifest before either lists an image, as when two jobs start at the same time.
BARRIER_SCRIPT = """
import sys, time
from pathlib import Path
import synth.generate as generate

barrier, tag, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
original = generate.sample

def sample_after_barrier(*args, **kwargs):
    (barrier / tag).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.02)  # let the batches of the two processes interleave
    return original(*args, **kwargs)

generate.sample = sample_after_barrier
raise SystemExit(generate.main(argv))
"""


@pytest.mark.slow  # two processes each import torch and diffusers: ~25 s on 2 loaded cores
def test_two_processes_into_one_folder_lose_no_rows(generators: dict[float, Path], tmp_path: Path) -> None:
    out, barrier = tmp_path / "samples", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, "-c", BARRIER_SCRIPT, str(barrier), klass, "--model",
                                   str(generators[1.0]), "--out", str(out), "--class", klass, "--n", "4", "--steps",
                                   "2", "--batch-size", "1", "--device", "cpu"],
                                  cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for klass in ("mel", "nv")]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    pngs = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    listed = sorted(r.file for r in read_manifest(out))
    assert len(pngs) == 8 and listed == pngs
    assert not list(out.rglob("*.partial"))


# --- 6. image cache and the bad-image policy ------------------------------------------------------

def ham_folder_with_a_bad_image(root: Path) -> Path:
    """Six images in HAM10000 layout; ISIC_5 is a truncated JPEG."""
    (root / "images").mkdir(parents=True)
    lines = ["lesion_id,image_id,dx"]
    for i in range(6):
        Image.new("RGB", (24, 24), (30 * i, 100, 60)).save(root / "images" / f"ISIC_{i}.jpg")
        lines.append(f"HAM_{i},ISIC_{i},{('nv', 'mel')[i % 2]}")
    bad = root / "images" / "ISIC_5.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    return bad


def test_skip_bad_run_does_not_change_a_later_strict_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, cache = tmp_path / "ham", tmp_path / "cache"
    bad = ham_folder_with_a_bad_image(root)
    def argv(out: Path, *flags: str) -> list[str]:
        return ["--data", "ham10000", "--root", str(root), "--image-size", str(IMAGE_SIZE), "--out", str(out), *flags,
                f"data.cache_dir={cache}", "data.val_fraction=0.2", "data.test_fraction=0.2"]

    for attempt in range(2):  # the second run finds the cache: the skip keeps its real reason
        out = tmp_path / f"lenient{attempt}"
        status, output = run_main(data_main, argv(out, "--skip-bad"), capsys)
        assert status == 0, output
        record = json.loads((out / "run.json").read_text())
        assert record["data"]["images"] == 5
        assert [s[0] for s in record["data"]["skipped"]] == ["ISIC_5"]
        assert "truncated or corrupt" in record["data"]["skipped"][0][1] and "cached" not in output
        assert "ISIC_5: Image file" in output
    status, output = run_main(data_main, argv(tmp_path / "strict"), capsys)
    assert status == 2, output
    assert str(bad) in output and "data.skip_bad=true" in output
    assert not (tmp_path / "strict" / "split.csv").exists()
