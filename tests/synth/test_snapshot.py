"""synth.snapshot: a generator folder from a run's checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dermkit.errors import DermkitError
from synth.generator import load_generator, read_info
from synth.snapshot import SnapshotConfig, snapshot
from synth.snapshot import main as snapshot_main


def test_snapshot_of_the_last_checkpoint_is_the_saved_generator(tiny_generator: Path, tmp_path: Path) -> None:
    # synth.train saves last.ckpt and then the generator from the same state: the snapshot must
    # hold the same EMA weights and the same record.
    out = tmp_path / "snap"
    assert snapshot_main(["--run", str(tiny_generator), "--out", str(out)]) == 0
    unet, scheduler, info = load_generator(out)
    saved_unet, saved_scheduler, saved_info = load_generator(tiny_generator)
    for (name, p), (_, q) in zip(unet.state_dict().items(), saved_unet.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert dict(scheduler.config) == dict(saved_scheduler.config)
    assert info == saved_info
    assert info.steps_trained == 2


def test_snapshot_reads_the_checkpoints_ema_weights_and_step(tiny_generator: Path, tmp_path: Path) -> None:
    # A checkpoint of another step, with other EMA weights: the snapshot follows the checkpoint.
    checkpoint = torch.load(tiny_generator / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    checkpoint["global_step"] = 1
    checkpoint["ema"]["shadow_params"] = [p + 1.0 for p in checkpoint["ema"]["shadow_params"]]
    earlier = tmp_path / "earlier.ckpt"
    torch.save(checkpoint, earlier)
    out = tmp_path / "snap"
    assert snapshot(SnapshotConfig(run=str(tiny_generator), checkpoint=str(earlier), out_dir=str(out))) == out
    assert read_info(out).steps_trained == 1
    unet, _, _ = load_generator(out)
    saved, _, _ = load_generator(tiny_generator)
    for p, q in zip(unet.parameters(), saved.parameters(), strict=True):
        assert torch.allclose(p, q + 1.0)


def test_snapshot_errors_name_what_is_missing(tiny_generator: Path, tmp_path: Path) -> None:
    def run_snapshot(run: Path, out: Path, checkpoint: str = "") -> Path:
        return snapshot(SnapshotConfig(run=str(run), checkpoint=checkpoint, out_dir=str(out)))

    with pytest.raises(DermkitError, match="nowhere does not exist"):
        run_snapshot(tmp_path / "nowhere", tmp_path / "snap")
    with pytest.raises(DermkitError, match="is the run folder itself"):
        run_snapshot(tiny_generator, tiny_generator)
    run = tmp_path / "copy"
    shutil.copytree(tiny_generator, run, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(DermkitError, match=r"last\.ckpt does not exist"):
        run_snapshot(run, tmp_path / "snap")
    (run / "train_state.json").unlink()
    with pytest.raises(DermkitError, match="train_state.json missing"):
        run_snapshot(run, tmp_path / "snap")
    not_synth = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, not_synth)
    with pytest.raises(DermkitError, match="no EMA weights"):
        run_snapshot(tiny_generator, tmp_path / "snap", str(not_synth))
    assert not (tmp_path / "snap").exists()
