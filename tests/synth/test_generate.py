"""synth.generate and the sampling loop: per-class output, guidance, seeds, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import synth.generate as generate_module
from dermkit.config import parse_config
from dermkit.errors import DermkitError
from dermkit.manifest import read_manifest
from dermkit.progress_file import read_progress
from synth.generate import FLAGS, GenerateConfig, generate
from synth.generator import load_generator
from synth.sampling import make_sampler, sample


def run(model: Path, out: Path, *args: str) -> list:
    cfg = parse_config(GenerateConfig, "t", "t", ["--model", str(model), "--out", str(out), "--steps", "3",
                                                  "--batch-size", "3", *args], FLAGS)
    return generate(cfg)


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {r.file: np.asarray(Image.open(folder / r.file)) for r in read_manifest(folder)}


def assert_manifest_complete(folder: Path) -> None:
    rows = read_manifest(folder)
    assert len({r.file for r in rows}) == len(rows), "duplicate rows"
    assert all((folder / r.file).is_file() for r in rows), "manifest lists a missing file"
    assert not list(folder.rglob("*.partial"))


def test_two_images_per_class(tiny_generator: Path, tmp_path: Path) -> None:
    _, _, info = load_generator(tiny_generator)
    classes = [c for c in info.classes if info.train_counts[c]]
    rows = run(tiny_generator, tmp_path, *[a for c in classes for a in ("--class", c)], "--n", "2")
    assert sorted(r.klass for r in rows) == sorted(classes * 2)
    assert_manifest_complete(tmp_path)
    assert {r.split_hash for r in rows} == {info.split_hash}
    assert all(a.shape == (16, 16, 3) for a in pixels(tmp_path).values())


def test_guidance_changes_the_output(tiny_generator: Path) -> None:
    unet, scheduler, _ = load_generator(tiny_generator)
    labels, seeds = torch.tensor([0, 1]), [5, 6]
    plain = sample(unet, make_sampler("ddim", scheduler), labels, seeds, num_steps=3, guidance=1.0)
    guided = sample(unet, make_sampler("ddim", scheduler), labels, seeds, num_steps=3, guidance=5.0)
    again = sample(unet, make_sampler("ddim", scheduler), labels, seeds, num_steps=3, guidance=5.0)
    assert (plain - guided).abs().max() > 1e-3
    assert torch.equal(guided, again)


def test_ddpm_sampler_is_batch_independent(tiny_generator: Path) -> None:
    unet, scheduler, _ = load_generator(tiny_generator)
    pair = sample(unet, make_sampler("ddpm", scheduler), torch.tensor([2, 3]), [7, 8], num_steps=4, guidance=2.0)
    single = sample(unet, make_sampler("ddpm", scheduler), torch.tensor([3]), [8], num_steps=4, guidance=2.0)
    assert torch.allclose(pair[1:], single, atol=1e-5)


def test_same_seed_same_images_other_seed_other_images(tiny_generator: Path, tmp_path: Path) -> None:
    run(tiny_generator, tmp_path / "a", "--class", "mel", "--n", "3", "--seed", "1")
    run(tiny_generator, tmp_path / "b", "--class", "melanoma", "--n", "3", "--seed", "1", "--batch-size", "2")
    run(tiny_generator, tmp_path / "c", "--class", "mel", "--n", "3", "--seed", "2")
    a, b, c = pixels(tmp_path / "a"), pixels(tmp_path / "b"), pixels(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    assert all(np.abs(a[f].astype(int) - b[f].astype(int)).max() <= 1 for f in a)  # batch size: rounding only
    assert any(not np.array_equal(a[f], c[f]) for f in a)


@pytest.mark.parametrize("interrupt_at", ["sample", "png", "manifest"])
def test_interrupted_run_resumes_without_duplicates(tiny_generator: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, interrupt_at: str) -> None:
    reference = tmp_path / "reference"
    run(tiny_generator, reference, "--class", "df", "--class", "vasc", "--n", "4")
    out = tmp_path / "out"
    calls = {"n": 0}
    target = {"sample": "sample", "png": "write_png", "manifest": "update_manifest"}[interrupt_at]
    original = getattr(generate_module, target)

    def interrupting(*args, **kwargs):  # the 2nd batch (sample, manifest) or the 5th PNG is interrupted
        calls["n"] += 1
        if calls["n"] == (5 if interrupt_at == "png" else 2):
            if interrupt_at == "png":  # killed mid-write: a partial file is left behind
                Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
                Path(str(args[0]) + ".partial").write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(generate_module, target, interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_generator, out, "--class", "df", "--class", "vasc", "--n", "4")
    assert_manifest_complete(out)
    assert 0 < len(read_manifest(out)) < 8 or interrupt_at == "sample"
    assert read_progress(out) is not None and (read_progress(out).done, read_progress(out).total) == (
        len(read_manifest(out)), 8)  # what is listed, of what was asked
    monkeypatch.setattr(generate_module, target, original)
    rows = run(tiny_generator, out, "--class", "df", "--class", "vasc", "--n", "4")
    assert len(rows) == 8
    assert_manifest_complete(out)
    assert len(list(out.rglob("*.png"))) == 8
    assert (read_progress(out).done, read_progress(out).total, read_progress(out).unit) == (8, 8, "images")
    ref = pixels(reference)
    assert all(np.array_equal(ref[f], img) for f, img in pixels(out).items())


def test_deleted_image_is_remade_and_rerun_adds_nothing(tiny_generator: Path, tmp_path: Path) -> None:
    run(tiny_generator, tmp_path, "--class", "bkl", "--n", "2")
    first = read_manifest(tmp_path)
    (tmp_path / first[0].file).unlink()  # the user deleted a listed image
    rows = run(tiny_generator, tmp_path, "--class", "bkl", "--n", "2")
    assert sorted(r.file for r in rows) == sorted(r.file for r in first)
    assert_manifest_complete(tmp_path)


def test_balance_counts_training_images(tiny_generator: Path, tmp_path: Path) -> None:
    _, _, info = load_generator(tiny_generator)
    target = info.train_counts["df"] + 2
    rows = run(tiny_generator, tmp_path, "--class", "dermatofibroma", "--class", "nv", "--balance", str(target))
    made = {c: sum(r.klass == c for r in rows) for c in ("df", "nv")}
    assert made == {"df": 2, "nv": max(0, target - info.train_counts["nv"])}


def test_ratio_makes_what_a_max_ratio_run_can_use_capped_by_n(tiny_generator: Path, tmp_path: Path) -> None:
    _, _, info = load_generator(tiny_generator)
    counts = {c: info.train_counts[c] for c in ("df", "vasc")}
    rows = run(tiny_generator, tmp_path / "ratio", "--class", "df", "--class", "vasc", "--ratio", "0.5")
    made = {c: sum(r.klass == c for r in rows) for c in counts}
    assert made == {c: k // 2 for c, k in counts.items()}  # floor, as finetune.synthetic's max_ratio
    rows = run(tiny_generator, tmp_path / "capped", "--class", "df", "--class", "vasc", "--ratio", "3", "--n", "2")
    assert {c: sum(r.klass == c for r in rows) for c in counts} == {c: min(3 * k, 2) for c, k in counts.items()}


@pytest.mark.parametrize(("args", "message"), [
    (["--class", "melanomma", "--n", "2"], "Did you mean: melanoma"),
    (["--class", "scc", "--n", "2"], "never saw class 'scc'"),
    (["--class", "mel", "--n", "0"], "--n must be at least 1"),
    (["--class", "mel"], "Pass one of --n"),
    (["--class", "mel", "--balance", "9", "--n", "2"], "Pass one of --n"),
    (["--class", "mel", "--balance", "9", "--ratio", "2"], "Pass one of --n"),
    (["--class", "mel", "--ratio", "0"], "--ratio must be positive"),
    ([], "Choose classes with --class"),
])
def test_bad_input_is_a_clear_error(tiny_generator: Path, tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(DermkitError, match=message):
        run(tiny_generator, tmp_path, *args)


@pytest.mark.parametrize("sampler_args", [["--sampler", "dmp"], ["sampler=dmp"]])
def test_misspelt_sampler_is_refused_when_the_config_is_read(tmp_path: Path, sampler_args: list[str]) -> None:
    # Before the generator is loaded: the model folder here does not even exist.
    with pytest.raises(DermkitError, match=r"sampler='dmp'\. Did you mean: dpm.*Known: ddim, dpm, ddpm\."):
        parse_config(GenerateConfig, "t", "t", ["--model", str(tmp_path / "nowhere"), *sampler_args], FLAGS)


def test_missing_model_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "out", "--class", "mel", "--n", "1")


def test_folder_of_another_model_is_refused(tiny_generator: Path, tmp_path: Path) -> None:
    run(tiny_generator, tmp_path, "--class", "mel", "--n", "1")
    header = json.loads((tmp_path / "manifest.json").read_text())
    header["model_hash"] = "0123456789abcdef"
    (tmp_path / "manifest.json").write_text(json.dumps(header))
    with pytest.raises(DermkitError, match="another generator"):
        run(tiny_generator, tmp_path, "--class", "mel", "--n", "2")


def test_command_line_exit_status(tiny_generator: Path, tmp_path: Path) -> None:
    assert generate_module.main(["--model", str(tiny_generator), "--out", str(tmp_path), "--class", "vasc",
                                 "--n", "1", "--steps", "2"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        generate_module.main(["--model", str(tiny_generator), "--out", str(tmp_path), "--class", "xyz", "--n", "1"])
    assert exit_info.value.code == 2
