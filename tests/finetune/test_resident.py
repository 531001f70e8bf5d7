"""finetune.train with data.augment_on=resident: training, validation and test batches drawn from the
images held on the device; the same run as the device path; no step that would wait for a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import finetune.train as train_module
from dermkit.augment import ViewAugment
from dermkit.data.prepare import PreparedData
from dermkit.data.resident import ResidentDataset
from finetune.module import ClassifierModule
from finetune.train import main
from tests.finetune.helpers import IMAGE_SIZE, write_manifest
from tests.sync_probe import SyncProbe, describe

# The arguments of the demo_run fixture (the device path, data.augment_on's default) but the path.
DEMO_RUN_ARGS = ["--backbone", "tiny_cnn", f"data.image_size={IMAGE_SIZE}", "data.batch_size=32", "data.num_workers=0",
                 "model.small_stem=true", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.accelerator=cpu", "synth.max_ratio=1.0"]


@pytest.mark.slow  # one fine-tuning run beside the session's demo_run: ~30 s on the loaded 2-core machine
def test_resident_run_is_the_device_paths_run(demo_run: Path, demo_prepared: PreparedData, demo_cache: Path,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real and synthetic training images, validation and test all come from the resident images, uint8;
    the test predictions are those of the device path's run with the same settings, to the bit."""
    seen: dict[str, list[tuple[torch.dtype, int]]] = {"train": [], "eval": []}
    transfer = ClassifierModule.on_after_batch_transfer
    augment = ViewAugment.__call__

    def spy_transfer(self: ClassifierModule, batch, dataloader_idx: int):  # type: ignore[no-untyped-def]
        seen["train" if self.trainer.training else "eval"].append((batch[0].dtype, batch[0].shape[0]))
        images, labels, index = transfer(self, batch, dataloader_idx)
        assert images.dtype == torch.float32
        return images, labels, index

    def spy_augment(self: ViewAugment, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8
        return augment(self, images)

    monkeypatch.setattr(ClassifierModule, "on_after_batch_transfer", spy_transfer)
    monkeypatch.setattr(ViewAugment, "__call__", spy_augment)
    loaders = train_module.make_loaders

    def check_loaders(cfg, data):  # type: ignore[no-untyped-def]
        made = loaders(cfg, data)
        assert all(isinstance(loader.dataset, ResidentDataset) and loader.num_workers == 0 for loader in made)
        assert data.resident is not None and len(data.resident.offsets) == 2  # real, then the synthetic images
        return made

    monkeypatch.setattr(train_module, "make_loaders", check_loaders)
    manifest = write_manifest(tmp_path / "synth", demo_prepared.split_hash, {"df": 5})
    out = tmp_path / "run"
    assert main(["--out", str(out), "--manifest", str(manifest), f"data.cache_dir={demo_cache}", *DEMO_RUN_ARGS,
                 "data.augment_on=resident"]) == 0
    assert [dtype for dtype, _ in seen["train"]] == [torch.uint8] * 2
    assert seen["eval"] and {dtype for dtype, _ in seen["eval"]} == {torch.uint8}  # validation and test
    assert (out / "predictions.csv").read_text() == (demo_run / "predictions.csv").read_text()


@pytest.mark.slow  # one short fine-tuning run: ~25 s on the loaded 2-core machine
def test_no_training_step_waits_for_the_device(demo_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Between logging steps nothing in a resident training step (drawing the batch, augmenting it, the
    step, the optimiser, the callbacks, the progress bar) asks the device for a value."""
    probe = SyncProbe()
    build = train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer",
                        lambda cfg, out_dir, callbacks=(), **kw: build(cfg, out_dir, callbacks=[*callbacks, probe],
                                                                       **kw))
    assert main(["--out", str(tmp_path / "run"), "--backbone", "tiny_cnn", f"data.cache_dir={demo_cache}",
                 f"data.image_size={IMAGE_SIZE}", "data.batch_size=16", "data.augment_on=resident",
                 "model.small_stem=true", "trainer.max_epochs=1", "trainer.limit_train_batches=8",
                 "trainer.accelerator=cpu", "trainer.log_every_n_steps=1000", "augment.rotation=30",
                 "report.explain=0", "report.bootstrap=100"]) == 0
    waits = probe.steady_waits()
    assert not waits, describe(waits)
