"""ssl.pretrain with data.augment_on=resident: the device path's run from images held on the device, the
kNN monitor through them, no training step that would wait for a GPU, and a non-finite loss still stops
the run (before any checkpoint holds it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ssl.pretrain as pretrain_module
from dermkit.data.resident import NormalizedBatches, ResidentLoader
from ssl.pretrain import run_pretraining
from ssl.simclr_module import SimCLRModule
from tests.sync_probe import SyncProbe, Wait, describe


@pytest.mark.slow  # two tiny pretraining runs: ~30 s on the loaded 2-core machine
def test_resident_run_is_the_device_paths_run(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaders = pretrain_module.build_loaders
    made = []

    def keep(cfg, data, resident=None):  # type: ignore[no-untyped-def]
        made.append(loaders(cfg, data, resident))
        return made[-1]

    monkeypatch.setattr(pretrain_module, "build_loaders", keep)
    args = ("--max-steps", "3", "monitor.max_bank=64")
    device = run_pretraining(tiny_config(*args, "data.augment_on=device", f"out_dir={tmp_path / 'device'}"))
    resident = run_pretraining(tiny_config(*args, "data.augment_on=resident", f"out_dir={tmp_path / 'resident'}"))
    train, bank, val = made[-1]
    assert isinstance(train, ResidentLoader) and isinstance(bank, NormalizedBatches) and isinstance(val,
                                                                                                  NormalizedBatches)
    assert resident.global_step == device.global_step == 3
    assert resident.backbone_path.read_bytes() == device.backbone_path.read_bytes()  # the same training, to the bit
    for key in ("monitor/knn_top1", "monitor/knn_balanced_acc"):  # the monitor ran on the resident images
        assert resident.metrics[key] == pytest.approx(device.metrics[key], abs=1e-6)


BUILD_TRAINER = pretrain_module.build_trainer


def _probed(monkeypatch: pytest.MonkeyPatch) -> SyncProbe:
    """A probe in the trainer of the next run (replacing an earlier one)."""
    probe = SyncProbe()
    build = BUILD_TRAINER
    monkeypatch.setattr(pretrain_module, "build_trainer",
                        lambda cfg, out_dir, callbacks=(), **kw: build(cfg, out_dir, callbacks=[*callbacks, probe],
                                                                       **kw))
    return probe


@pytest.mark.slow  # two tiny pretraining runs: ~30 s on the loaded 2-core machine
def test_no_training_step_waits_for_the_device_but_in_lightlys_nt_xent(tiny_config,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """BYOL (and DINO's path, the same hooks): nothing between logging steps asks the device for a value.
    SimCLR: only lightly's NT-Xent loss does (it drops each view's similarity to itself by a boolean mask,
    forward and backward), which dermkit does not rewrite."""
    args = ("--max-steps", "8", "data.augment_on=resident", "trainer.log_every_n_steps=1000", "monitor.every_n_epochs=0")
    probe = _probed(monkeypatch)
    run_pretraining(tiny_config("--method", "byol", *args))
    waits = probe.steady_waits()
    assert not waits, describe(waits)

    probe = _probed(monkeypatch)
    run_pretraining(tiny_config("--method", "simclr", *args, "--restart"))
    waits = probe.steady_waits()

    def nt_xent(wait: Wait) -> bool:  # its boolean-mask index, or that index's gradient in the backward pass
        stack = "".join(wait.stack)
        return wait.op.endswith("(boolean mask)") and ("lightly/loss/ntx_ent_loss.py" in stack
                                                       or "_engine_run_backward" in stack)

    assert waits and all(nt_xent(w) for w in waits), describe(waits)


def test_a_non_finite_loss_stops_the_run_before_a_checkpoint_holds_it(tiny_config, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    step = SimCLRModule.ssl_step

    def diverged(self: SimCLRModule, views: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss, features = step(self, views)
        return loss * float("nan") if self.global_step >= 1 else loss, features

    monkeypatch.setattr(SimCLRModule, "ssl_step", diverged)
    cfg = tiny_config("--max-steps", "3", "trainer.log_every_n_steps=1000", "data.augment_on=resident",
                      f"out_dir={tmp_path / 'run'}")
    with pytest.raises(FloatingPointError, match="not finite at step 1; lower optim.lr"):
        run_pretraining(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
