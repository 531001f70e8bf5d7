"""Helpers for the ssl tests: tiny pretraining configs on the demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermkit.config import parse_config
from ssl.pretrain import FLAGS, PretrainConfig


TINY = ["--backbone", "tiny_cnn", "--image-size", "32", "--batch-size", "16", "--workers", "0",
        "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "monitor.max_bank=128",
        "dino.output_dim=64", "dino.head_hidden_dim=32", "dino.head_bottleneck_dim=16", "dino.n_local_views=2"]


@pytest.fixture()
def tiny_config(demo_cache: Path, tmp_path: Path):
    """``tiny_config(*args)`` -> a PretrainConfig for a tiny CPU run writing into ``tmp_path/run``."""

    def make(*args: str) -> PretrainConfig:
        argv = [*TINY, f"data.cache_dir={demo_cache}", "--out", str(tmp_path / "run"), *args]
        return parse_config(PretrainConfig, "test", "test", argv, FLAGS)

    return make
