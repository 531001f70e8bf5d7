"""Every bad input ends in one clear line: exit status 2, no traceback, nothing half-written.

A catalogue of user mistakes (issue 16, "Unclear errors and tracebacks"), each run as the real
command: the stage's ``main(argv)`` in this process (enough to see the exit status and the
message), or ``python -m ...`` in a subprocess where the interpreter's own start-up matters.
Inputs are tiny files written here, or the demo data.
"""

from __future__ import annotations

import csv
import importlib
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from dermkit.config import DataConfig, Flag, TrainerConfig, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


# --- inputs ------------------------------------------------------------------------------------

def write_bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid 1-bit grayscale PNG of ``side`` x ``side`` pixels, a few kB on disk.

    20,000^2 = 4e8 pixels is over twice Pillow's default ``Image.MAX_IMAGE_PIXELS`` (89.5e6), so
    Pillow raises ``DecompressionBombError`` on opening it, as it would for a real bomb.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + side // 8)  # filter byte + 1 bit per pixel
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def write_ham_folder(root: Path, n_per_class: int = 6, extra_rows: list[list[str]] = ()) -> Path:
    """A HAM10000-format folder: two classes, one lesion per image, 16-px solid images."""
    (root / "images").mkdir(parents=True)
    rows = []
    for c, (dx, colour) in enumerate((("mel", (90, 40, 30)), ("nv", (180, 120, 90)))):
        for i in range(n_per_class):
            image_id = f"ISIC_{c}{i:03d}"
            Image.new("RGB", (16, 16), colour).save(root / "images" / f"{image_id}.png")
            rows.append([f"HAM_{c}{i:03d}", image_id, dx, "histo", "50", "male", "back"])
    with (root / "HAM10000_metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HAM_HEADER)
        writer.writerows([*rows, *extra_rows])
    return root


def ham_with_bomb(tmp: Path) -> Path:
    root = write_ham_folder(tmp / "ham", extra_rows=[["HAM_BOMB", "ISIC_BOMB", "mel", "histo", "50", "male", "back"]])
    write_bomb_png(root / "images" / "ISIC_BOMB.png")
    return root


def ham_with_short_row(tmp: Path) -> Path:
    # line 1 header, lines 2-13 the images, line 14 the short row
    return write_ham_folder(tmp / "ham", extra_rows=[["HAM_X", "ISIC_X"]])


# --- the catalogue -----------------------------------------------------------------------------

@dataclass
class Case:
    """One bad input: the command, what its one error line must say, and what must not appear.

    ``args`` may hold ``{tmp}``, ``{file}`` (an existing regular file) and ``{root}`` (the folder
    ``setup`` returns); ``expect`` are substrings of the error line (same placeholders).
    """

    module: str
    args: list[str]
    expect: list[str]
    setup: Callable[[Path], Path] | None = None
    absent: list[str] = field(default_factory=lambda: ["{tmp}/out"])


NOT_A_FOLDER = "is a file, not a folder"
UNDER_A_FILE = "cannot be created: {file} is a file"
STAGES_WITH_OUT = ["ssl.pretrain", "ssl.evaluate", "synth.train", "synth.generate", "synth.evaluate", "synth.speed",
                   "synth.snapshot",
                   "finetune.train", "finetune.evaluate", "finetune.export", "bench.label_efficiency", "dermkit.data"]
# Inputs the stages need besides --out; they do not exist: the --out check must come first.
OTHER_INPUTS = {"synth.generate": ["--model", "{tmp}/no-generator", "--class", "mel"],
                "synth.snapshot": ["--run", "{tmp}/no-run"],
                "synth.evaluate": ["--synthetic", "{tmp}/no-samples"],
                "finetune.evaluate": ["--checkpoint", "{tmp}/no.ckpt"],
                "finetune.export": ["--checkpoint", "{tmp}/no.ckpt"],
                "ssl.evaluate": ["--data", "demo"]}

CASES: dict[str, Case] = {
    **{f"{stage}-out-is-a-file": Case(stage, [*OTHER_INPUTS.get(stage, []), "--out", "{file}"],
                                      ["--out", "{file}", NOT_A_FOLDER], absent=[])
       for stage in STAGES_WITH_OUT},
    **{f"{stage}-out-under-a-file": Case(stage, [*OTHER_INPUTS.get(stage, []), "--out", "{file}/run"],
                                         [UNDER_A_FILE], absent=[])
       for stage in STAGES_WITH_OUT},
    # data.batch_size < 1 is refused by the shared data section, in every stage that has one
    "synth.train-batch-size-0": Case("synth.train", ["--out", "{tmp}/out", "--batch-size", "0"],
                                     ["data.batch_size=0", "positive"]),
    "finetune.train-batch-size-negative": Case("finetune.train", ["--out", "{tmp}/out", "data.batch_size=-4"],
                                               ["data.batch_size=-4", "positive"]),
    "dermkit.data-batch-size-0": Case("dermkit.data", ["--out", "{tmp}/out", "data.batch_size=0"],
                                      ["data.batch_size=0"]),
    "synth.evaluate-batch-size-0": Case("synth.evaluate", ["--synthetic", "{tmp}/no-samples", "--out", "{tmp}/out",
                                                           "data.batch_size=0"], ["data.batch_size=0"]),
    "ssl.pretrain-workers-negative": Case("ssl.pretrain", ["--out", "{tmp}/out", "--workers", "-1"],
                                          ["data.num_workers=-1"]),
    # an unknown --data name is the error, whatever the root
    "finetune.train-unknown-data": Case("finetune.train", ["--data", "hamm", "--out", "{tmp}/out"],
                                        ["'hamm'", "Did you mean: ham10000", "Known: demo"]),
    "synth.train-unknown-data": Case("synth.train", ["--data", "isci", "--out", "{tmp}/out"],
                                     ["'isci'", "Did you mean: isic"]),
    # overrides after flags are read; an unknown one names the closest key
    "ssl.pretrain-override-after-flag": Case("ssl.pretrain", ["--out", "{tmp}/out", "trainer.max_steps=1",
                                                              "--backbone", "tiny_cnn", "data.rooot=/x"],
                                             ["'data.rooot'", "data.root"]),
    # trainer settings Lightning would reject with a traceback, or that train nothing
    "ssl.pretrain-devices-abc": Case("ssl.pretrain", ["--out", "{tmp}/out", "--devices", "abc"],
                                     ["trainer.devices='abc'"]),
    "finetune.train-bad-precision": Case("finetune.train", ["--out", "{tmp}/out", "trainer.precision=bf61"],
                                         ["trainer.precision='bf61'"]),
    "synth.train-bad-strategy": Case("synth.train", ["--out", "{tmp}/out", "trainer.strategy=dpp"],
                                     ["trainer.strategy='dpp'", "Did you mean: ddp"]),
    "ssl.pretrain-trains-nothing": Case("ssl.pretrain", ["--out", "{tmp}/out", "--backbone", "tiny_cnn",
                                                         "trainer.limit_train_batches=0"],
                                        ["trainer.limit_train_batches=0", "trains nothing"]),
    # old spellings (issue 14): the error names the one name every command now uses
    **{f"{stage}-old-out-key": Case(stage, [*OTHER_INPUTS.get(stage, []), "out={tmp}/out"],
                                    ["'out'", "now called 'out_dir'"])
       for stage in ("ssl.evaluate", "synth.train", "synth.generate", "synth.evaluate", "dermkit.data")},
    "synth.train-old-checkpoint-every": Case("synth.train", ["--out", "{tmp}/out", "checkpoint_every=5"],
                                             ["'checkpoint_every'", "now called 'checkpoint_every_n_steps'"]),
    # --backbone names an architecture in every command; a weights file is --weights (or --init)
    "ssl.evaluate-backbone-file": Case("ssl.evaluate", ["--backbone", "{tmp}/ssl/backbone.safetensors", "--data",
                                                        "demo", "--out", "{tmp}/out"],
                                       ["--backbone names an architecture", "Known: resnet18",
                                        "--weights {tmp}/ssl/backbone.safetensors"]),
    "ssl.evaluate-backbone-random": Case("ssl.evaluate", ["--backbone", "random", "--data", "demo"],
                                         ["'random'", "without --weights"]),
    "ssl.evaluate-old-backbone-key": Case("ssl.evaluate", ["--data", "demo", "backbone={tmp}/backbone.safetensors"],
                                          ["'backbone'", "now called 'weights'"]),
    "ssl.evaluate-weights-random": Case("ssl.evaluate", ["--weights", "random", "--data", "demo"],
                                        ["weights='random'", "leave out --weights"]),
    "synth.evaluate-backbone-file": Case("synth.evaluate", [*OTHER_INPUTS["synth.evaluate"], "--backbone",
                                                            "{tmp}/ssl/backbone.safetensors", "--out", "{tmp}/out"],
                                         ["--backbone names an architecture",
                                          "--weights {tmp}/ssl/backbone.safetensors"]),
    "synth.evaluate-old-random-backbone-key": Case("synth.evaluate", [*OTHER_INPUTS["synth.evaluate"],
                                                                      "random_backbone=tiny_cnn"],
                                                   ["'random_backbone'", "now called 'backbone'"]),
    "ssl.pretrain-backbone-file": Case("ssl.pretrain", ["--backbone", "{tmp}/imagenet.pth", "--out", "{tmp}/out"],
                                       ["--init {tmp}/imagenet.pth"]),
    "finetune.train-unknown-backbone": Case("finetune.train", ["--backbone", "resnet19", "--out", "{tmp}/out"],
                                            ["'resnet19'", "Did you mean: resnet18", "Known: resnet18, resnet50"]),
    "finetune.export-no-checkpoint": Case("finetune.export", ["--checkpoint", "{tmp}/no.ckpt", "--out",
                                                              "{tmp}/out"], ["Checkpoint {tmp}/no.ckpt does not exist"]),
    # a CAM layer the backbone lacks is refused before training, not when the report is drawn
    "finetune.train-unknown-cam-layer": Case("finetune.train", ["--backbone", "tiny_cnn", "--out", "{tmp}/out",
                                                                "data.image_size=32", "report.explain=1",
                                                                "report.cam_layer=layer4"],
                                             ["report.cam_layer='layer4'", "tiny_cnn backbone", "Candidates: 2, 5, 8"]),
    # bad files in a dataset
    "dermkit.data-csv-row-too-short": Case("dermkit.data", ["--data", "ham10000", "--root", "{root}", "--out",
                                                            "{tmp}/out"],
                                           ["{root}/HAM10000_metadata.csv", "line 14", "2 field(s), expected 7"],
                                           setup=ham_with_short_row),
    "dermkit.data-decompression-bomb": Case("dermkit.data", ["--data", "ham10000", "--root", "{root}", "--image-size",
                                                             "8", "--out", "{tmp}/out"],
                                            ["{root}/images/ISIC_BOMB.png", "too large to decode safely",
                                             "data.skip_bad=true"], setup=ham_with_bomb),
}


def fill(text: str, tmp: Path, file: Path, root: Path | None) -> str:
    return text.format(tmp=tmp, file=file, root=root)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_line(name: str, tmp_path: Path, demo_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    file = tmp_path / "a-file.txt"
    file.write_text("not a folder\n")
    root = case.setup(tmp_path) if case.setup else None
    argv = [fill(a, tmp_path, file, root) for a in case.args]
    # ``python -m dermkit.data`` runs the package's __main__ module
    main = importlib.import_module(case.module + (".__main__" if case.module == "dermkit.data" else "")).main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    output = capsys.readouterr()
    assert exit_info.value.code == 2, output.err
    assert "Traceback" not in output.err + output.out
    lines = error_lines(output.err)
    assert len(lines) == 1, output.err
    for expected in case.expect:
        assert fill(expected, tmp_path, file, root) in lines[0], lines[0]
    for path in case.absent:
        assert not Path(fill(path, tmp_path, file, root)).exists(), f"{path} was written"
    assert file.read_text() == "not a folder\n"


def run_module(module: str, *args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_error_is_one_line_on_a_narrow_console(tmp_path: Path, demo_cache: Path) -> None:
    # rich wraps at the console width (80 columns when not a terminal); the error line must not.
    root = ham_with_short_row(tmp_path)
    result = run_module("dermkit.data", "--data", "ham10000", "--root", str(root), "--out", str(tmp_path / "out"),
                        f"data.cache_dir={demo_cache}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "line 14" in lines[0] and len(lines[0]) > 100
    assert not (tmp_path / "out").exists()


def test_decompression_bomb_is_skipped_and_listed_with_skip_bad(tmp_path: Path, demo_cache: Path) -> None:
    root = ham_with_bomb(tmp_path)
    out = tmp_path / "out"
    result = run_module("dermkit.data", "--data", "ham10000", "--root", str(root), "--image-size", "8",
                        "--skip-bad", "--out", str(out), f"data.cache_dir={demo_cache}")
    assert result.returncode == 0, result.stderr
    assert "ISIC_BOMB" in result.stderr and "skipped" in result.stderr
    ids = [row["image_id"] for row in csv.DictReader((out / "split.csv").open())]
    assert len(ids) == 12 and "ISIC_BOMB" not in ids


@dataclass
class _Schema:
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = ""


def test_overrides_may_come_anywhere_among_flags() -> None:
    flags = [Flag("--batch-size", "data.batch_size", "b", int), Flag("--epochs", "trainer.max_epochs", "e", int)]
    cfg = parse_config(_Schema, "test", "test", ["data.image_size=32", "--batch-size", "8", "trainer.max_steps=3",
                                                 "--epochs", "2", "out_dir=/x"], flags)
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.trainer.max_steps, cfg.trainer.max_epochs, cfg.out_dir) == \
        (32, 8, 3, 2, "/x")
    # the override still wins over the flag, wherever it stands
    assert parse_config(_Schema, "t", "t", ["data.batch_size=4", "--batch-size", "8"], flags).data.batch_size == 4
