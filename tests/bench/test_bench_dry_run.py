"""``bench.label_efficiency --dry-run``: every step's config checked by its stage, costs printed, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.grid.cost import backbone_profile, finetune_cost

REPO_ROOT = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DERMKIT_CACHE": str(tmp_path / "cache"), "DERMKIT_RUNS": str(tmp_path / "runs"),
           "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench.label_efficiency", *args, "--dry-run"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("preset, steps, cells", [
    ("gpu-full", 101, 90),
    # The same path as gpu-full for a smaller preset (make demo runs the demo preset itself).
    pytest.param("demo", 41, 36, marks=pytest.mark.long),
])
def test_dry_run_checks_every_step_and_writes_nothing(preset: str, steps: int, cells: int, tmp_path: Path) -> None:
    done = dry_run(tmp_path, "--preset", preset)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"dry run: {steps} steps" in out
    for module in ("ssl.pretrain", "synth.train", "synth.generate", "synth.evaluate", "finetune.train"):
        assert f"of python -m {module}" in out
    assert out.count("  $ python -m finetune.train ") == cells
    assert "estimated cost" in out and "peak memory" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_dry_run_names_a_step_config_its_stage_refuses(tmp_path: Path) -> None:
    # A typo inside a stage override passes the bench's own checks; only the stage's schema knows.
    done = dry_run(tmp_path, "--preset", "demo", "finetune.overrides=[trainer.max_epochz=3]")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "refused" in out and "max_epochz" in out and "cell/f0.1-random-real-s0" in out
    assert not (tmp_path / "runs").exists()


def test_cost_model_scales_with_work() -> None:
    # The network's figures come from one meta-device forward: ResNet-50 at 224 px is ~4.1 GFLOP (x2 MACs).
    flops = backbone_profile("resnet50", False, 224).forward_flops
    assert 7e9 < flops < 9e9
    cfg = {"data": {"image_size": 64, "batch_size": 64, "num_workers": 0, "fraction": 1.0},
           "trainer": {"accelerator": "gpu", "precision": "bf16-mixed", "devices": "1", "max_epochs": 10,
                       "max_steps": -1, "limit_train_batches": 1.0},
           "model": {"backbone": "resnet18", "small_stem": False}}
    small = finetune_cost(cfg, 7000, 1500, 1500)
    cfg["trainer"]["max_epochs"] = 20
    assert finetune_cost(cfg, 7000, 1500, 1500).seconds > 1.9 * small.seconds


def test_cost_model_counts_validated_epochs_and_a_frozen_backbone() -> None:
    cfg = {"data": {"image_size": 64, "batch_size": 64, "num_workers": 0, "fraction": 0.01},
           "trainer": {"accelerator": "cpu", "precision": "32-true", "devices": "1", "max_epochs": 60,
                       "max_steps": -1, "limit_train_batches": 1.0},
           "model": {"backbone": "resnet18", "small_stem": False}}
    every = finetune_cost(cfg, 7000, 1500, 1500).seconds
    fifth = finetune_cost({**cfg, "val": {"every_n_epochs": 5, "start": 0.0}}, 7000, 1500, 1500).seconds
    assert fifth < 0.4 * every  # at 1% labels validation is most of a cell (60 passes over 1,500 images)
    # Training alone (no validation or test images; augmented on the device, so compute-bound): the frozen
    # backbone's forward pass is a third of a forward and backward.
    device_path = {**cfg, "data": {**cfg["data"], "augment_on": "device"}}
    trained = finetune_cost(device_path, 7000, 0, 0).seconds
    frozen = finetune_cost({**device_path, "optim": {"freeze_backbone": True}}, 7000, 0, 0).seconds
    assert frozen == pytest.approx(trained / 3)
