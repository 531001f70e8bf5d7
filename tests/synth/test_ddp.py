"""``synth.train`` under DDP on CPU (two gloo processes, a real subprocess) and in bf16-mixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.ddp_probe import run_probed, tree, writes
from tests.synth.conftest import tiny_train_argv

RUN_FILES = {"config.yaml", "run.json", "train_state.json", "dermkit_generator.json", "checkpoints/last.ckpt",
             "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"}


@pytest.mark.slow
def test_ddp_trains_saves_the_generator_and_writes_each_file_once(demo_cache: Path, tmp_path: Path) -> None:
    out, probe = tmp_path / "gen", tmp_path / "probe"
    args = [*tiny_train_argv(out, demo_cache, steps=3), "trainer.strategy=ddp", "trainer.devices=2"]
    run_probed(probe, "synth.train", args, demo_cache, out)
    files = tree(out)
    assert RUN_FILES <= set(files), sorted(RUN_FILES - set(files))
    assert not [f for f in files if "version_1" in f or "-v1" in f], files
    assert writes(probe, 1, out) == [], "the second DDP process wrote into the run folder"
    assert {"config.yaml", "run.json", "train_state.json", "dermkit_generator.json"} <= set(writes(probe, 0, out))
    assert json.loads((out / "dermkit_generator.json").read_text())["steps_trained"] == 3
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 3


@pytest.mark.slow
def test_bf16_mixed_on_cpu(demo_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    run_probed(tmp_path / "probe", "synth.train", [*tiny_train_argv(out, demo_cache), "trainer.precision=bf16-mixed"],
               demo_cache, out)
    assert json.loads((out / "dermkit_generator.json").read_text())["steps_trained"] == 2
    assert "precision: bf16-mixed" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_ddp_cosine_schedule_ends_with_the_last_epoch(demo_cache: Path, tmp_path: Path) -> None:
    """With ``max_epochs`` the schedule spans the steps one process takes (it sees half the data
    under two processes), so the learning rate reaches zero at the last step, not half-way."""
    out = tmp_path / "gen"
    args = [*tiny_train_argv(out, demo_cache), "trainer.max_steps=-1", "trainer.max_epochs=1", "data.fraction=0.05",
            "optim.warmup_steps=0", "trainer.strategy=ddp", "trainer.devices=2"]
    run_probed(tmp_path / "probe", "synth.train", args, demo_cache, out)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert ckpt["global_step"] >= 2  # a schedule with a middle
    assert group["lr"] == pytest.approx(0.0, abs=1e-3 * group["initial_lr"]), (ckpt["global_step"], group)
