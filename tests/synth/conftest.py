"""A tiny generator trained once per session on the demo data (16 px, two optimiser steps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from synth.train import main as train_main


def tiny_train_argv(out: Path, cache: Path, steps: int = 2) -> list[str]:
    """Arguments of a two-step ``tiny`` training run on the demo data."""
    return ["--out", str(out), "--preset", "tiny", "--image-size", "16", "--steps", str(steps),
            "--batch-size", "8", "data.num_workers=0", f"data.cache_dir={cache}", "trainer.accelerator=cpu",
            "optim.warmup_steps=1", "checkpoint_every_n_steps=1"]


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Path:
    """A generator folder written by ``python -m synth.train`` (tiny preset, 2 steps)."""
    out = tmp_path_factory.mktemp("generator") / "tiny"
    assert train_main(tiny_train_argv(out, demo_cache)) == 0
    return out


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded 2-core machine OpenMP threads wait for each other and a tiny
    UNet runs ~10x slower with two threads than with one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
