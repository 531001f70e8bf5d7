"""The gpu-quick preset: the evidence question (SimCLR >= 200 epochs, 1/10/100% x random/SimCLR x 3 seeds)
with the images resident on the device, bf16, on a GPU."""

from __future__ import annotations

from pathlib import Path

from bench.grid.plan import build_steps
from bench.grid.presets import parse_args, preset_path, validate


def test_gpu_quick_answers_the_evidence_question_with_resident_images(tmp_path: Path) -> None:
    cfg = parse_args(["--preset", "gpu-quick"])
    validate(cfg)
    steps = build_steps(cfg, tmp_path)
    pretrain = [s for s in steps if s.kind == "pretrain"]
    cells = [s for s in steps if s.kind == "cell"]
    assert [s.name for s in pretrain] == ["pretrain/simclr"] and not [s for s in steps if s.kind.startswith("synth")]
    assert len(cells) == 3 * 2 * 3
    assert {(c.cell.fraction, c.cell.init, c.cell.seed) for c in cells} == {
        (f, i, s) for f in (0.01, 0.1, 1.0) for i in ("random", "simclr") for s in (0, 1, 2)}
    simclr = pretrain[0].args
    epochs = [int(a.split("=")[1]) for a in simclr if a.startswith("trainer.max_epochs=")]
    assert epochs[-1] >= 200 and "model.backbone=resnet18" in simclr and "data.image_size=64" in simclr
    for step in (*pretrain, *cells):  # every stage holds its images on the device, in bf16, on the GPU
        assert "data.augment_on=resident" in step.args, step.name
        assert "trainer.precision=bf16-mixed" in step.args and "trainer.accelerator=gpu" in step.args, step.name
    assert "Running time:" in preset_path("gpu-quick").read_text()


def test_augment_on_reaches_the_stages_that_augment(tmp_path: Path) -> None:
    """Pretraining and cells get data.augment_on always (the default is device since issue 13); synth.train,
    which does not read it, never. The cpu-real preset pins the worker path of its evidence runs."""
    default = build_steps(parse_args(["--preset", "demo"]), tmp_path)
    assert all("data.augment_on=device" in s.args for s in default if s.kind in ("pretrain", "cell"))
    synth = [s for s in default if s.kind == "synth-train"]
    assert synth and not any(a.startswith("data.augment_on=") for s in synth for a in s.args)
    cfg = parse_args(["--preset", "cpu-real"])
    validate(cfg)
    pinned = [s for s in build_steps(cfg, tmp_path) if s.kind in ("pretrain", "cell")]
    assert pinned and all("data.augment_on=workers" in s.args for s in pinned)
