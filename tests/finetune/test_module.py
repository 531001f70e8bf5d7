"""The classifier module on random tensors: schedule, head-only phase, sampler."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from finetune.module import ClassifierModule, lr_factors
from finetune.sampler import class_balanced_sampler

CLASSES = ["mel", "nv", "vasc"]


def _module(head_epochs: int) -> ClassifierModule:
    return ClassifierModule(CLASSES, "tiny_cnn", True, 16, [0.5] * 3, [0.25] * 3,
                            loss={"name": "focal", "counts": [4, 10, 2], "weighting": "inverse"},
                            lr=1e-2, backbone_lr_scale=0.1, head_epochs=head_epochs)


def _loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(16, 3, 16, 16, generator=gen)
    labels = torch.randint(0, 3, (16,), generator=gen)
    return DataLoader(TensorDataset(images, labels, torch.arange(16)), batch_size=8)


class _Snapshots(pl.Callback):
    """Backbone and head weights and BatchNorm running means after each training epoch."""

    def __init__(self) -> None:
        self.backbone: list[torch.Tensor] = []
        self.head: list[torch.Tensor] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, module: ClassifierModule) -> None:
        self.backbone.append(torch.cat([t.detach().flatten().clone() for t in module.backbone.state_dict().values()
                                        if t.is_floating_point()]))
        self.head.append(module.head.weight.detach().clone())


def test_head_only_phase_then_whole_network() -> None:
    module = _module(head_epochs=1)
    before = torch.cat([t.flatten().clone() for t in module.backbone.state_dict().values() if t.is_floating_point()])
    head_before = module.head.weight.detach().clone()
    snaps = _Snapshots()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[snaps],
                         limit_val_batches=0)
    trainer.fit(module, _loader())
    # epoch 0: backbone weights and BatchNorm statistics untouched, head trained
    assert torch.equal(snaps.backbone[0], before)
    assert not torch.equal(snaps.head[0], head_before)
    # epoch 1: the whole network trains
    assert not torch.equal(snaps.backbone[1], before)
    groups = trainer.optimizers[0].param_groups
    assert groups[1]["initial_lr"] == pytest.approx(groups[0]["initial_lr"] * 0.1)


def test_validation_logs_balanced_accuracy_and_test_collects_predictions() -> None:
    module = _module(head_epochs=0)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, _loader(), _loader())
    assert 0.0 <= float(trainer.callback_metrics["val/balanced_accuracy"]) <= 1.0
    assert module.last_val_report is not None and module.last_val_report["num_images"] == 16
    trainer.test(module, _loader(), verbose=False)
    index, probs, targets = module.test_predictions
    assert index.tolist() == list(range(16)) and probs.shape == (16, 3)
    assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-5)


def test_lr_schedule_warmup_then_cosine() -> None:
    factors = lr_factors(10, warmup_steps=2)
    assert factors.shape == (10,)
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0) and np.all(np.diff(factors[2:]) < 0) and factors[-1] > 0
    assert lr_factors(4)[0] == pytest.approx(1.0)


def test_class_balanced_sampler_draws_classes_equally() -> None:
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    sampler = class_balanced_sampler(labels, num_samples=6000, generator=torch.Generator().manual_seed(0))
    drawn = torch.bincount(labels[torch.tensor(list(sampler))], minlength=3).float() / 6000
    assert torch.allclose(drawn, torch.full((3,), 1 / 3), atol=0.03)


def test_frozen_backbone_trains_only_the_head_and_keeps_batch_norm_statistics() -> None:
    module = ClassifierModule(CLASSES, "tiny_cnn", True, 16, [0.5] * 3, [0.25] * 3, lr=1e-2, freeze_backbone=True,
                              loss={"name": "ce", "counts": [4, 10, 2], "weighting": "inverse"})
    backbone_before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in module.head.state_dict().items()}
    assert any("running_mean" in k for k in backbone_before)  # tiny_cnn has batch norm: its statistics are checked
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, _loader(), _loader())  # validation between the epochs switches train/eval modes
    after = module.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in backbone_before.items())  # weights, statistics, batch counts
    assert all(not torch.equal(module.head.state_dict()[k], v) for k, v in head_before.items())
    optimised = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert {id(p) for p in optimised} == {id(p) for p in module.head.parameters()}
    module.train()
    assert not module.backbone.training and module.head.training


def test_batchnorm_float32_runs_batch_norm_in_float32_under_bf16_autocast() -> None:
    seen: list[torch.dtype] = []
    plain = _module(head_epochs=0)
    hooked = ClassifierModule(CLASSES, "tiny_cnn", True, 16, [0.5] * 3, [0.25] * 3, batchnorm_float32=True,
                              loss={"name": "focal", "counts": [4, 10, 2], "weighting": "inverse"})
    for module in (plain, hooked):
        layer = next(m for m in module.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
        handle = layer.register_forward_hook(lambda _m, inputs, output: seen.append(output.dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            module(torch.randn(2, 3, 16, 16))
        handle.remove()
    assert seen == [torch.bfloat16, torch.float32]
    assert set(hooked.state_dict()) == set(plain.state_dict())  # checkpoints stay interchangeable
