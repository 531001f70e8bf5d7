"""End-to-end pretraining runs: a few steps of each method on tiny_cnn and 32-px demo images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermkit.backbones import build_backbone, load_backbone
from dermkit.config import DataConfig
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError
from ssl.pretrain import main, run_pretraining

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_pretrain_writes_run_folder(method: str, tiny_config) -> None:
    cfg = tiny_config("--method", method, "--max-steps", "2")
    result = run_pretraining(cfg)
    out = result.out_dir
    assert result.global_step == 2
    for name in ("checkpoints/last.ckpt", "backbone.safetensors", "backbone.json", "config.yaml", "run.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "logs" / "metrics.csv").is_file()
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    card = json.loads((out / "backbone.json").read_text())
    assert card["method"] == method and card["architecture"] == "tiny_cnn" and card["input_size"] == 32
    assert card["split_hash"] and card["data"]["name"] == "demo" and card["data"]["steps"] == 2
    assert 0.0 <= result.metrics["monitor/knn_balanced_acc"] <= 1.0
    assert result.metrics["monitor/embedding_std"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_wait_fraction"] is None  # two steps: all inside the timer's warm-up
    assert summary["peak_gpu_memory_mib"] is None  # trained on the CPU


def test_card_round_trips_to_identical_backbone(tiny_config) -> None:
    result = run_pretraining(tiny_config("--method", "dino", "--max-steps", "1"))
    loaded, card = load_backbone(result.backbone_path)
    # The saved backbone must be the checkpoint's teacher, weight for weight.
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    teacher = build_backbone(card.architecture, card.small_stem, card.input_size)
    teacher.load_state_dict({k[len("teacher_backbone."):]: v for k, v in state.items()
                             if k.startswith("teacher_backbone.")})
    images = torch.randn(4, 3, 32, 32)
    loaded.eval(), teacher.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), teacher(images), rtol=0, atol=0)


def test_resume_continues_from_saved_step(tiny_config) -> None:
    first = run_pretraining(tiny_config("--max-steps", "4"))
    assert first.start_step == 0 and first.global_step == 4
    # Re-running a finished run trains nothing and still writes the backbone (e.g. after an interrupt).
    first.backbone_path.unlink()
    again = run_pretraining(tiny_config("--max-steps", "4"))
    assert again.start_step == again.global_step == 4 and again.backbone_path.is_file()
    assert torch.load(again.checkpoint, map_location="cpu", weights_only=False)["global_step"] == 4
    # A longer run has another learning-rate schedule: refused, not continued (dermkit.resume).
    with pytest.raises(DermkitError, match="trainer.max_steps: 4 -> 6"):
        run_pretraining(tiny_config("--max-steps", "6"))


def test_resume_refuses_other_backbone(tiny_config) -> None:
    run_pretraining(tiny_config("--max-steps", "1"))
    with pytest.raises(DermkitError, match="model.small_stem"):
        run_pretraining(tiny_config("--max-steps", "2", "--small-stem"))


def test_unlabelled_folder_skips_knn(tiny_config, demo_cache: Path, tmp_path: Path, capsys) -> None:
    demo = prepare_data(DataConfig(cache_dir=str(demo_cache), image_size=32))
    for i, row in enumerate(demo.indices("train")[:40]):
        sub = tmp_path / "images" / f"part{i % 3}" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(demo.images[row])).save(sub / f"img{i}.png")
    result = run_pretraining(tiny_config("--data", "folder", "--root", str(tmp_path / "images"), "--max-steps", "2"))
    assert result.train_images == 40
    assert "monitor/knn_top1" not in result.metrics and "monitor/embedding_std" in result.metrics
    assert "kNN monitoring is skipped" in capsys.readouterr().err


def test_bad_method_is_a_clear_error(tiny_config, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--method", "simclrr", "--backbone", "tiny_cnn"])
    assert exit_info.value.code == 2
    assert "Did you mean: simclr" in capsys.readouterr().err


def test_help_runs_from_repo_root() -> None:
    done = subprocess.run([sys.executable, "-m", "ssl.pretrain", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resumes from" in done.stdout and "--method" in done.stdout and "trainer.strategy=ddp" in done.stdout


def test_ctrl_c_saves_the_running_step_and_the_rerun_resumes_from_it(tiny_config, monkeypatch) -> None:
    from ssl.simclr_module import SimCLRModule

    original = SimCLRModule.training_step

    def interrupted_at_step_3(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SimCLRModule, "training_step", interrupted_at_step_3)
    cfg = tiny_config("--max-steps", "6")  # no checkpoint before the end of the epoch or step 6
    with pytest.raises(SystemExit):
        run_pretraining(cfg)
    last = Path(cfg.out_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3
    assert not (Path(cfg.out_dir) / "backbone.safetensors").exists()  # an interrupted run writes no backbone
    monkeypatch.setattr(SimCLRModule, "training_step", original)
    resumed = run_pretraining(tiny_config("--max-steps", "6"))
    assert resumed.start_step == 3 and resumed.global_step == 6
