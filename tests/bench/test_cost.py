"""bench.cost: the dry run's estimates follow what each SSL method computes per step."""

from __future__ import annotations

from typing import Any

import pytest

from bench.grid.cost import pretrain_cost


def pretrain_config(method: str) -> dict[str, Any]:
    return {"method": method, "data": {"image_size": 32, "batch_size": 16, "num_workers": 0, "augment_on": "device"},
            "trainer": {"accelerator": "cpu", "devices": "1", "max_epochs": 2, "max_steps": -1},
            "model": {"backbone": "tiny_cnn", "small_stem": False}, "optim": {"name": "sgd"},
            "dino": {"local_crop_size": 0, "n_local_views": 2}}


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_methods_with_a_momentum_network_cost_more_than_simclr(method: str) -> None:
    simclr, other = pretrain_cost(pretrain_config("simclr"), 320), pretrain_cost(pretrain_config(method), 320)
    assert other.seconds > simclr.seconds  # the target / teacher forward pass (augmentation on the device: compute-bound)
    assert other.memory_bytes > simclr.memory_bytes and other.disk_bytes > simclr.disk_bytes  # its weights
    assert other.note == simclr.note == "40 steps of 16"
