"""The SSL method registry: one training step of every registered method, names in errors, config sections."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from dermkit.config import parse_config
from dermkit.data.datasets import CachedImageDataset
from dermkit.errors import DermkitError
from ssl.methods import METHODS, SSLMethod, get_method, register_method
from ssl.pretrain import (FLAGS, PretrainConfig, build_device_augment, build_module, build_train_transform, main,
                          validate)

BATCH = 8
SIZE = 32
# (method, data.augment_on): the worker path of every method, the device path of those that have one.
PATHS = [(name, "workers") for name in METHODS] + [(name, "device") for name, m in METHODS.items() if m.device_views]


def _config(*args: str) -> PretrainConfig:
    # optim.min_lr_ratio=1: a 1-step run's cosine schedule would otherwise end (and start) at lr 0.
    argv = ["--backbone", "tiny_cnn", "--image-size", str(SIZE), "--batch-size", str(BATCH), "--workers", "0",
            "optim.min_lr_ratio=1.0", *args]
    return parse_config(PretrainConfig, "test", "test", argv, FLAGS)


def _one_batch_loader(cfg: PretrainConfig, tmp_path: Path) -> DataLoader:
    """A loader of one batch of random (S, S, 3) uint8 images, through the method's views of cfg's path."""
    images = np.random.default_rng(0).integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    transform = None if cfg.data.augment_on == "device" else build_train_transform(cfg)
    dataset = CachedImageDataset(tmp_path / "images.npy", np.arange(BATCH), np.zeros(BATCH, dtype=np.int64),
                                 transform)
    return DataLoader(dataset, batch_size=BATCH, shuffle=False, drop_last=True)


@pytest.mark.parametrize("name, augment_on", PATHS)
def test_one_step_of_every_method_trains_the_backbone(name: str, augment_on: str, tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    cfg = _config("--method", name, f"data.augment_on={augment_on}")
    validate(cfg)
    module = build_module(cfg)
    if augment_on == "device":
        module.device_augment = build_device_augment(cfg)
    before = {k: v.detach().clone() for k, v in module.backbone.named_parameters()}
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=_one_batch_loader(cfg, tmp_path))
    assert trainer.global_step == 1
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss), f"{name}: loss {loss}"
    changed = [k for k, v in module.backbone.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert changed, f"{name}: no backbone weight changed in one optimiser step"


def test_unknown_method_lists_the_registered_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DermkitError, match="Unknown method 'simclr2'") as error:
        get_method("simclr2")
    listed = str(error.value).split("Known: ", 1)[1].rstrip(".").split(", ")
    assert listed == sorted(METHODS)
    with pytest.raises(SystemExit) as exit_info:  # the command line fails the same way, before any data is read
        main(["--method", "simclr2", "--backbone", "tiny_cnn"])
    assert exit_info.value.code == 2
    assert f"Known: {', '.join(sorted(METHODS))}." in capsys.readouterr().err


def test_every_method_has_a_strict_config_section() -> None:
    schema = OmegaConf.structured(PretrainConfig)
    for name, method in METHODS.items():
        assert OmegaConf.get_type(schema[name]) is method.config
        with pytest.raises(DermkitError, match=f"Unknown config key '{name}.no_such_key'"):
            _config(f"{name}.no_such_key=1")


def test_registry_refuses_a_repeated_or_unlisted_name() -> None:
    simclr = METHODS["simclr"]
    with pytest.raises(ValueError, match="registered twice"):
        register_method(simclr)
    with pytest.raises(ValueError, match="not in dermkit.ssl_methods.SSL_METHODS"):
        register_method(dataclasses.replace(simclr, name="simclr_v2"))
    assert "simclr_v2" not in METHODS


def test_a_method_without_device_path_refuses_augment_on_device(monkeypatch: pytest.MonkeyPatch) -> None:
    workers_only: SSLMethod = dataclasses.replace(METHODS["simclr"], device_views=None)
    monkeypatch.delitem(METHODS, "simclr")  # the registry refuses to overwrite an entry
    monkeypatch.setitem(METHODS, "simclr", workers_only)
    validate(_config("--method", "simclr", "data.augment_on=workers"))
    with pytest.raises(DermkitError, match="data.augment_on=workers"):
        validate(_config("--method", "simclr"))  # the default is device
