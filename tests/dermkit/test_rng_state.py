"""A resumed run goes on with new random draws instead of replaying those it made after its seed."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dermkit.config import TrainerConfig
from dermkit.rng_state import RNG_KEY, collect_rng_states, restore_rng_states
from dermkit.trainer import build_trainer


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_states_survive_a_weights_only_load_and_restore_every_generator() -> None:
    _seed(1)
    saved = collect_rng_states()
    expected = _draws()
    buffer = io.BytesIO()
    torch.save({RNG_KEY: saved}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)[RNG_KEY]  # how dermkit.backbones.card reads weights files
    _seed(2)  # what a resumed run's seed_everything leaves
    restore_rng_states(loaded)
    assert _draws() == expected


class NoiseDrawer(pl.LightningModule):
    """One weight; records the noise each training step draws, as the diffusion module does."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.noise: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        noise = torch.randn(1)
        self.noise.append(float(noise))
        return ((self.weight * batch[0] - noise) ** 2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(out: Path, steps: int, resume: bool) -> list[float]:
    pl.seed_everything(0, verbose=False)  # as every stage does at start, resumed or not
    cfg = TrainerConfig(max_steps=steps, accelerator="cpu", devices="1", log_every_n_steps=1)
    trainer, _ = build_trainer(cfg, out, every_n_train_steps=2, enable_model_summary=False)
    module = NoiseDrawer()
    data = DataLoader(TensorDataset(torch.linspace(-1, 1, 8)), batch_size=2, shuffle=True)  # 4 steps an epoch
    trainer.fit(module, data, ckpt_path=str(out / "checkpoints" / "last.ckpt") if resume else None)
    return module.noise


def test_a_run_resumed_from_its_checkpoint_draws_on_and_does_not_replay(tmp_path: Path) -> None:
    whole = _fit(tmp_path / "whole", 8, resume=False)
    first = _fit(tmp_path / "parts", 4, resume=False)  # one epoch, then stopped
    assert RNG_KEY in torch.load(tmp_path / "parts" / "checkpoints" / "last.ckpt", weights_only=False)
    second = _fit(tmp_path / "parts", 8, resume=True)
    assert first == whole[:4]
    assert second != first  # before: the seed alone, the same noise again
    assert second == whole[4:]  # resumed at an epoch end, it draws what the run without a stop drew


def test_a_checkpoint_without_states_resumes_with_a_stream_of_its_step(tmp_path: Path) -> None:
    first = _fit(tmp_path / "run", 4, resume=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=False)
    del state[RNG_KEY]  # a checkpoint written before the states were kept
    torch.save(state, checkpoint)
    shutil.copytree(tmp_path / "run", tmp_path / "again")
    resumed = _fit(tmp_path / "run", 8, resume=True)
    assert resumed != first  # not the seed's stream again
    assert _fit(tmp_path / "again", 8, resume=True) == resumed  # the seed and the step decide it
