"""``ssl.pretrain`` under DDP on CPU (two gloo processes), and in bf16-mixed: the paths a GPU cluster takes.

Each DDP test runs the real command in a subprocess (``tests.ddp_probe``), so Lightning launches a
second process exactly as on a cluster; the probe records what each process's loss saw and which
files each process wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightly.loss import NTXentLoss
from safetensors.torch import load_file

from ssl.pretrain import run_pretraining
from tests.ddp_probe import kill_after_checkpoint, run_probed, tree, writes

# Every file a finished run folder holds; written by the first process only.
RUN_FILES = {"backbone.safetensors", "backbone.json", "checkpoints/last.ckpt", "config.yaml", "run.json",
             "summary.json", "logs/metrics.csv"}


def ddp_args(out: Path, cache: Path, method: str, steps: int, *extra: str) -> list[str]:
    """A tiny two-process CPU run: tiny_cnn, 16 px demo images, 8 images per process and step."""
    return ["--method", method, "--backbone", "tiny_cnn", "--image-size", "16", "--batch-size", "8",
            "--workers", "0", "--max-steps", str(steps), "--out", str(out), f"data.cache_dir={cache}",
            "trainer.accelerator=cpu", "trainer.strategy=ddp", "trainer.devices=2", "trainer.log_every_n_steps=1",
            "monitor.max_bank=64", "dino.output_dim=64", "dino.head_hidden_dim=32", "dino.head_bottleneck_dim=16",
            "dino.n_local_views=2", *extra]


def check_written_once(out: Path, probe: Path) -> None:
    """The run folder holds each output once, and only the first process wrote into it."""
    files = tree(out)
    assert RUN_FILES <= set(files), sorted(RUN_FILES - set(files))
    assert not [f for f in files if "version_1" in f or "-v1" in f or "rank" in f], files
    assert len([f for f in files if f.startswith("logs/tensorboard/") and "events.out" in f]) == 1, files
    assert writes(probe, 1, out) == [], "the second DDP process wrote into the run folder"
    assert {"config.yaml", "run.json", "summary.json", "backbone.json"} <= set(writes(probe, 0, out))


@pytest.mark.slow
def test_simclr_ddp_loss_sees_negatives_of_both_processes(demo_cache: Path, tmp_path: Path) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    run_probed(probe, "ssl.pretrain", ddp_args(out, demo_cache, "simclr", 2), demo_cache, out)
    ranks = [torch.load(probe / f"probe_rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and all(r["gather_distributed"] for r in ranks)
    (a0, a1, loss_a), (b0, b1, loss_b) = ranks[0]["ntxent"][0], ranks[1]["ntxent"][0]
    assert a0.shape == b0.shape == (8, a0.shape[1])
    # Gathering makes the mean of the two processes' losses the loss of one process holding the
    # global batch (2 * 16 - 2 negatives per view); each process alone would see only its own 14.
    single = NTXentLoss(temperature=ranks[0]["temperature"])
    global_loss = single(torch.cat([a0, b0]), torch.cat([a1, b1]))
    torch.testing.assert_close((loss_a + loss_b) / 2, global_loss, rtol=1e-5, atol=1e-5)
    local_loss = (single(a0, a1) + single(b0, b1)) / 2
    assert not torch.allclose(local_loss, global_loss, atol=1e-3)
    check_written_once(out, probe)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 2


@pytest.mark.slow
def test_dino_ddp_centre_is_the_same_average_in_both_processes(demo_cache: Path, tmp_path: Path) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    run_probed(probe, "ssl.pretrain", ddp_args(out, demo_cache, "dino", 3), demo_cache, out)
    ranks = [torch.load(probe / f"probe_rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [len(r["dino_teacher_out"]) for r in ranks] == [3, 3]
    torch.testing.assert_close(ranks[0]["final_center"], ranks[1]["final_center"], rtol=0, atol=0)
    # The centre follows the EMA of the teacher outputs' mean over *both* processes' batches.
    momentum = ranks[0]["center_momentum"]
    centre, local = ranks[0]["initial_center"], ranks[0]["initial_center"]
    for out0, out1 in zip(ranks[0]["dino_teacher_out"], ranks[1]["dino_teacher_out"]):  # (V, B, K) each
        centre = centre * momentum + (out0.mean(dim=(0, 1)) + out1.mean(dim=(0, 1))) / 2 * (1 - momentum)
        local = local * momentum + out0.mean(dim=(0, 1)) * (1 - momentum)
    torch.testing.assert_close(ranks[0]["final_center"], centre, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(centre, local, atol=1e-6)
    check_written_once(out, probe)


@pytest.mark.slow
def test_killed_ddp_run_resumes_from_its_checkpoint(demo_cache: Path, tmp_path: Path) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    args = ddp_args(out, demo_cache, "simclr", 6, "checkpoint_every_n_steps=2")
    killed_at = kill_after_checkpoint(probe, "ssl.pretrain", args, demo_cache, out, out / "checkpoints" / "last.ckpt",
                                      min_step=2)
    assert not (out / "summary.json").exists()  # it really stopped early
    run_probed(tmp_path / "probe2", "ssl.pretrain", args, demo_cache, out)  # the same command again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start_step"] >= killed_at and summary["start_step"] % 2 == 0
    assert summary["global_step"] == 6
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_bf16_mixed_on_cpu(method: str, tiny_config) -> None:
    result = run_pretraining(tiny_config("--method", method, "--max-steps", "2", "trainer.precision=bf16-mixed",
                                         "--image-size", "16"))
    assert result.global_step == 2
    assert torch.isfinite(torch.tensor(result.metrics["train/loss"]))
    # Mixed precision keeps float32 weights: the saved backbone is float32, not bfloat16.
    assert {t.dtype for t in load_file(str(result.backbone_path)).values()} <= {torch.float32, torch.int64}
