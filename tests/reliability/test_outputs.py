"""Nothing silently wrong, second round (issue 42): output folders, split provenance in evaluation, early checks.

Each case is a real command (the stage's ``main`` in this process) on the demo data, a tiny model
(tiny_cnn, 32 px, two training steps) or a few files written here:

- an evaluation never overwrites a training run (or any other command's folder), and a re-run into
  its own folder replaces the previous report whole (no stale Grad-CAM grid), atomically;
- an evaluation of the train/val/test split of another split than the model's is refused;
- bad numbers and paths (``--explain -1``, ``--export`` a file, ``--reuse`` missing, an empty split)
  end in one line before any work, the grid's dry run included;
- image extensions are matched in any letter case.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dermkit.console import console
from dermkit.out_folder import EXPORT_KIND, check_out_folder, read_contents, recover, replacing
from dermkit.errors import DermkitError
from tests.reliability.test_errors import HAM_HEADER, error_lines

TINY_FINETUNE = ["--backbone", "tiny_cnn", "model.small_stem=true", "data.image_size=32", "data.batch_size=32",
                 "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.accelerator=cpu"]
CPU = ["data.num_workers=0", "trainer.accelerator=cpu"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error lines are not wrapped, so a message can be matched whole."""
    monkeypatch.setattr(console, "width", 10_000)


@pytest.fixture(scope="module")
def trained_run(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finetune.train run folder on the demo data (split seed 0): two steps of tiny_cnn at 32 px."""
    from finetune.train import main as finetune_main

    out = tmp_path_factory.mktemp("finetune") / "run"
    assert finetune_main([*TINY_FINETUNE, "--out", str(out), f"data.cache_dir={demo_cache}"]) == 0
    return out


def best_checkpoint(run: Path) -> Path:
    return next((run / "checkpoints").glob("best-*.ckpt"))


def run_command(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``python -m module`` in this process: its exit status and its error output."""
    capsys.readouterr()
    main = importlib.import_module(module + (".__main__" if module == "dermkit.data" else "")).main
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    return int(status or 0), capsys.readouterr().err


def one_error_line(status: int, err: str) -> str:
    """The single ``error:`` line of a command that exited with status 2 without a traceback."""
    assert status == 2, err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def evaluate_argv(run: Path, demo_cache: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(best_checkpoint(run)), "--data", "demo", f"data.cache_dir={demo_cache}", *CPU, *extra]


# --- data loss: an evaluation into a training run's folder ------------------------------------------------

def test_evaluation_into_the_training_run_folder_is_refused_and_changes_nothing(
        trained_run: Path, demo_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digests(trained_run)
    status, err = run_command("finetune.evaluate", evaluate_argv(trained_run, demo_cache, "--split", "test", "--out",
                                                                 str(trained_run)), capsys)
    line = one_error_line(status, err)
    assert str(trained_run) in line and "a fine-tuning run (python -m finetune.train" in line
    assert digests(trained_run) == before


def fake_folder(root: Path, kind: str | None, files: dict[str, str]) -> Path:
    """A folder holding ``files`` (relative path -> text) and, with ``kind``, a run.json recording it."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if kind:
        (root / "run.json").write_text(json.dumps({"kind": kind, "seed": 0}))
    return root


# Folders as each command leaves them, written before run.json recorded the command (recognised by their files).
LEGACY_FOLDERS: dict[str, dict[str, str]] = {
    "finetune.train": {"checkpoints/last.ckpt": "x", "config.yaml": "loss:\n  name: ce\nsampler: shuffle\n",
                       "run.json": "{}", "metrics.json": "{}", "predictions.csv": ""},
    "ssl.pretrain": {"checkpoints/last.ckpt": "x", "config.yaml": "method: simclr\n", "run.json": "{}"},
    "synth.train": {"checkpoints/last.ckpt": "x", "config.yaml": "model:\n  preset: tiny\n",
                    "train_state.json": "{}", "dermkit_generator.json": "{}"},
    "synth.generate": {"manifest.json": "{}", "manifest.csv": "file,class,split_hash\n", "run.json": "{}"},
    "finetune.filter_synthetic": {"manifest.json": "{}", "manifest.csv": "", "scores.csv": ""},
    "bench.label_efficiency": {"cells/f1-random-real-s0/done.json": "{}",
                               "run.json": json.dumps({"command": "python -m bench.label_efficiency --preset demo"})},
    EXPORT_KIND: {"cells/f1-random-real-s0/done.json": "{}", "report.md": ""},
    "dermkit.data": {"split.csv": "", "split.json": "{}", "run.json": "{}"},
    "synth.evaluate": {"metrics.json": "{}", "near_copies.csv": "", "run.json": "{}"},
    "ssl.evaluate": {"metrics.json": json.dumps({"knn": {}}), "run.json": "{}"},
    "finetune.evaluate": {"metrics.json": "{}", "run.json": json.dumps({"checkpoint": "c.ckpt"}),
                          "report/index.html": ""},
    "synth.speed": {"speed.json": "{}", "run.json": "{}"},
    "synth.snapshot": {"dermkit_generator.json": "{}", "unet/config.json": "{}"},
}


@pytest.mark.parametrize("kind", list(LEGACY_FOLDERS))
def test_what_a_folder_holds_is_read_from_run_json_or_its_files(kind: str, tmp_path: Path) -> None:
    legacy = fake_folder(tmp_path / "legacy", None, LEGACY_FOLDERS[kind])
    assert read_contents(legacy).command == kind
    recorded = fake_folder(tmp_path / "recorded", kind, {"anything.txt": ""})
    assert read_contents(recorded).command == kind
    driver_only = fake_folder(tmp_path / "started", None, {"started.json": "{}", "stage.log": ""})
    assert read_contents(driver_only) is None  # a grid step not yet run: the stage may write it


TRAINING_RUN = {"checkpoints/last.ckpt": "x", "config.yaml": "loss:\n  name: ce\n", "metrics.json": "{}"}
# Every command that writes an output folder, with the other inputs it needs (which need not exist: the
# output folder is checked first, when the arguments are parsed).
WRITERS: dict[str, list[str]] = {
    "finetune.evaluate": ["--checkpoint", "{tmp}/no.ckpt"],
    "ssl.evaluate": ["--data", "demo"],
    "synth.evaluate": ["--synthetic", "{tmp}/no-samples"],
    "synth.speed": [],
    "synth.snapshot": ["--run", "{tmp}/no-run"],
    "dermkit.data": [],
    "ssl.pretrain": [],
    "synth.train": [],
    "synth.generate": ["--model", "{tmp}/no-generator", "--class", "mel"],
    "finetune.filter_synthetic": ["--checkpoint", "{tmp}/no.ckpt", "--manifest", "{tmp}/samples"],
    "bench.label_efficiency": ["--preset", "demo"],
}


@pytest.mark.parametrize("module", [m for m in WRITERS if m != "finetune.train"] + ["finetune.train-into-report"])
def test_every_writer_refuses_a_folder_of_another_command(module: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    if module == "finetune.train-into-report":  # a training run pointed at an evaluation report
        module, folder, what = "finetune.train", fake_folder(tmp_path / "out", "finetune.evaluate",
                                                             {"metrics.json": "{}"}), "an evaluation report"
    else:
        folder, what = fake_folder(tmp_path / "out", None, TRAINING_RUN), "a fine-tuning run"
    before = digests(folder)
    fake_folder(tmp_path / "samples", "synth.generate", {"manifest.csv": "file,class,split_hash\n"})  # to filter
    args = [a.format(tmp=tmp_path) for a in WRITERS.get(module, [])]
    status, err = run_command(module, [*args, "--out", str(folder)], capsys)
    line = one_error_line(status, err)
    assert f"{folder} holds {what}" in line
    assert digests(folder) == before


@pytest.mark.parametrize("module", ["finetune.evaluate", "ssl.evaluate", "synth.speed", "dermkit.data"])
def test_a_replacing_writer_refuses_a_folder_of_unknown_files(module: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = fake_folder(tmp_path / "mine", None, {"notes.txt": "keep me"})
    args = [a.format(tmp=tmp_path) for a in WRITERS[module]]
    line = one_error_line(*run_command(module, [*args, "--out", str(folder)], capsys))
    assert "files no dermkit command wrote (notes.txt)" in line and "replace the whole folder" in line
    assert (folder / "notes.txt").read_text() == "keep me"


# --- a re-run replaces its outputs whole, atomically --------------------------------------------------------

def test_evaluating_again_leaves_nothing_of_the_earlier_report(trained_run: Path, demo_cache: Path,
                                                               tmp_path: Path) -> None:
    from finetune.evaluate import main as evaluate_main

    out = tmp_path / "eval"
    assert evaluate_main(evaluate_argv(trained_run, demo_cache, "--split", "test", "--explain", "1",
                                       "--out", str(out))) == 0
    assert list((out / "report").glob("cam_*.png")) and (out / "report" / "thumbs").is_dir()
    assert evaluate_main(evaluate_argv(trained_run, demo_cache, "--split", "test", "report.mistakes=0",
                                       "--out", str(out))) == 0
    assert not list((out / "report").glob("cam_*.png")) and not (out / "report" / "thumbs").exists()
    assert json.loads((out / "run.json").read_text())["kind"] == "finetune.evaluate"
    assert not list(tmp_path.glob(".eval.*"))  # no staging folder left beside it


def test_a_failed_evaluation_leaves_the_previous_report_complete(trained_run: Path, demo_cache: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import finetune.evaluate as evaluate

    out = tmp_path / "eval"
    assert evaluate.main(evaluate_argv(trained_run, demo_cache, "--split", "val", "--out", str(out))) == 0
    before = digests(out)

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # stopped while writing the report, after run.json and the scores

    monkeypatch.setattr(evaluate, "write_outputs", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(evaluate_argv(trained_run, demo_cache, "--split", "val", "--explain", "1", "--out", str(out)))
    assert digests(out) == before
    assert not list(tmp_path.glob(".eval.*"))


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_kill_during_the_swap_leaves_the_previous_outputs_or_the_new_ones(tmp_path: Path) -> None:
    # Killed between the two renames: the folder is gone, the previous outputs are aside; they come back.
    out = tmp_path / "eval"
    previous = fake_folder(tmp_path / f".eval.replaced-{dead_pid()}", "finetune.evaluate", {"metrics.json": "old"})
    partial = fake_folder(tmp_path / f".eval.partial-{dead_pid()}", "finetune.evaluate", {"metrics.json": "half"})
    recover(out)
    assert (out / "metrics.json").read_text() == "old" and not previous.exists() and not partial.exists()
    # Killed after the new outputs were swapped in: they stay, and the grid's log left aside joins them.
    aside = fake_folder(tmp_path / f".eval.replaced-{dead_pid()}", "finetune.evaluate",
                        {"metrics.json": "old", "stage.log": "log"})
    (out / "metrics.json").write_text("new")
    recover(out)
    assert (out / "metrics.json").read_text() == "new" and (out / "stage.log").read_text() == "log"
    assert not aside.exists()


def test_replacing_keeps_a_drivers_files_and_other_commands_subfolders(tmp_path: Path) -> None:
    # A generator snapshot re-made while a generation made from it lives inside its folder, run as a grid step.
    out = fake_folder(tmp_path / "snap", "synth.snapshot", {"unet/old.bin": "old", "stage.log": "grid log\n",
                                                           "started.json": "{}", "done.json": "{}"})
    fake_folder(out / "samples", "synth.generate", {"manifest.json": "{}", "mel/0.png": "png"})
    check_out_folder(out, "synth.snapshot", replaces=True)
    with replacing(out, "synth.snapshot") as staging:
        (staging / "unet").mkdir()
        (staging / "unet" / "new.bin").write_text("new")
    assert (out / "unet" / "new.bin").is_file() and not (out / "unet" / "old.bin").exists()
    assert (out / "stage.log").read_text() == "grid log\n" and (out / "started.json").is_file()
    assert not (out / "done.json").exists()  # it described the previous outputs
    assert (out / "samples" / "mel" / "0.png").read_text() == "png"
    with pytest.raises(DermkitError, match="holds a generation"):
        check_out_folder(out / "samples", "synth.snapshot", replaces=True)


# --- split provenance in evaluation --------------------------------------------------------------------------

@pytest.mark.parametrize("moved", [False, True], ids=["in-its-run", "checkpoint-moved-away"])
def test_scoring_another_split_of_the_data_is_refused_naming_both_hashes(
        moved: bool, trained_run: Path, demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = best_checkpoint(trained_run)
    if moved:  # no run.json beside it: the hash recorded in the checkpoint itself decides
        checkpoint = Path(shutil.copy(checkpoint, tmp_path / "model.ckpt"))
    model_hash = json.loads((trained_run / "run.json").read_text())["split_hash"]
    out = tmp_path / "eval"
    status, err = run_command("finetune.evaluate", ["--checkpoint", str(checkpoint), "--data", "demo", "--split",
                                                    "test", "data.split_seed=1", f"data.cache_dir={demo_cache}",
                                                    *CPU, "--out", str(out)], capsys)
    line = one_error_line(status, err)
    assert f"split hash {model_hash} there" in line and "--split all" in line
    other = line.split(" in this run")[0].rsplit(" ", 1)[-1]
    assert len(other) == 16 and other != model_hash
    assert not out.exists()


# --- every number and path checked before the work -----------------------------------------------------------

@pytest.mark.parametrize("module, argv, expect", [
    ("finetune.evaluate", ["--checkpoint", "{tmp}/no.ckpt", "--explain", "-1"], "--explain (report.explain)=-1"),
    ("finetune.evaluate", ["--checkpoint", "{tmp}/no.ckpt", "report.explain=-2"], "report.explain)=-2"),
    ("finetune.evaluate", ["--checkpoint", "{tmp}/no.ckpt", "report.bootstrap=1"], "report.bootstrap=1"),
    ("finetune.train", ["report.explain=-1"], "report.explain=-1"),
    ("finetune.train", ["report.mistakes=-3"], "report.mistakes=-3"),
])
def test_bad_report_numbers_are_refused_before_any_work(module: str, argv: list[str], expect: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status, err = run_command(module, [*(a.format(tmp=tmp_path) for a in argv), "--out", str(out)], capsys)
    line = one_error_line(status, err)
    assert expect in line and "no.ckpt" not in line
    assert not out.exists()


def small_image_folder(root: Path) -> Path:
    """An image folder of two classes, three 16-px images each: too few for a test split."""
    for klass, colour in (("mel", (90, 40, 30)), ("nv", (180, 120, 90))):
        (root / klass).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), colour).save(root / klass / f"{klass}{i}.png")
    return root


def test_an_empty_split_is_one_line_in_evaluation_and_training(trained_run: Path, demo_cache: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = small_image_folder(tmp_path / "small")
    out = tmp_path / "eval"
    line = one_error_line(*run_command("finetune.evaluate", [
        "--checkpoint", str(best_checkpoint(trained_run)), "--data", "imagefolder", "--root", str(root), "--split",
        "test", f"data.cache_dir={demo_cache}", *CPU, "--out", str(out)], capsys))
    assert f"The test split of imagefolder at {root} holds no image" in line and "0 test" in line
    assert "--split all" in line
    assert not out.exists()
    run = tmp_path / "run"
    line = one_error_line(*run_command("finetune.train", [*TINY_FINETUNE, "--data", "imagefolder", "--root",
                                                          str(root), f"data.cache_dir={demo_cache}", "--out",
                                                          str(run)], capsys))
    assert "split of imagefolder" in line and "holds no image" in line
    assert not run.exists()


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_grid_checks_export_reuse_and_split_sizes_before_any_step(dry: bool, tmp_path: Path, demo_cache: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    out = tmp_path / "grid"
    base = ["--preset", "demo", "--out", str(out), *(["--dry-run"] if dry else []), f"data.cache_dir={demo_cache}"]
    cases = [
        (["--export", str(a_file)], f"--export (report.export) {a_file} is a file, not a folder"),
        (["--export", str(out)], "is the grid's own run folder"),
        (["--reuse", str(tmp_path / "gone")], f"--reuse (run.reuse) {tmp_path / 'gone'} does not exist"),
        (["data.name=imagefolder", f"data.root={small_image_folder(tmp_path / 'small')}"],
         "would be empty" if dry else "holds no image"),
    ]
    for extra, expect in cases:
        line = one_error_line(*run_command("bench.label_efficiency", [*base, *extra], capsys))
        assert expect in line
        assert not out.exists()
    assert a_file.read_text() == "not a folder\n"
    training = fake_folder(tmp_path / "training", None, TRAINING_RUN)
    line = one_error_line(*run_command("bench.label_efficiency", [*base, "--export", str(training)], capsys))
    assert "holds a fine-tuning run" in line


# --- image extensions in any letter case -----------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".JPG", ".Png"])
def test_ham10000_images_are_found_whatever_the_letter_case_of_their_extension(
        suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = []
    for c, dx in enumerate(("mel", "nv")):
        for i in range(6):
            image_id = f"ISIC_{c}{i:03d}"
            Image.new("RGB", (16, 16), (90 + 80 * c, 60, 40)).save(root / "images" / f"{image_id}{suffix}",
                                                                  format="PNG" if suffix == ".Png" else "JPEG")
            rows.append([f"HAM_{c}{i:03d}", image_id, dx, "histo", "50", "male", "back"])
    with (root / "HAM10000_metadata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([HAM_HEADER, *rows])
    out = tmp_path / "split"
    status, err = run_command("dermkit.data", ["--data", "ham10000", "--root", str(root), "--image-size", "8",
                                               f"data.cache_dir={tmp_path / 'cache'}", "--out", str(out)], capsys)
    assert status == 0, err
    assert len(list(csv.DictReader((out / "split.csv").open()))) == 12
    (root / "images" / f"ISIC_0000{suffix}").unlink()
    line = one_error_line(*run_command("dermkit.data", ["--data", "ham10000", "--root", str(root), "--image-size", "8",
                                                        f"data.cache_dir={tmp_path / 'cache'}", "--out",
                                                        str(tmp_path / "split2")], capsys))
    assert "ISIC_0000" in line and "in any letter case" in line
