"""ssl.pretrain with data.augment_on=device: uint8 batches augmented in on_after_batch_transfer."""

from __future__ import annotations

import pytest
import torch

from dermkit.augment import MultiViewAugment
from dermkit.errors import DermkitError
from ssl.pretrain import run_pretraining


@pytest.mark.parametrize("method, sizes", [("simclr", [32, 32]), ("dino", [32, 32, 16, 16])])
def test_device_path_feeds_the_method_augmented_views(method: str, sizes: list[int], tiny_config,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.dtype, list[int]]] = []
    original = MultiViewAugment.__call__

    def spy(self: MultiViewAugment, images: torch.Tensor) -> list[torch.Tensor]:
        views = original(self, images)
        seen.append((images.dtype, [v.shape[-1] for v in views]))
        assert all(v.dtype == torch.float32 and v.shape[0] == images.shape[0] for v in views)
        return views

    monkeypatch.setattr(MultiViewAugment, "__call__", spy)
    cfg = tiny_config("--method", method, "--max-steps", "2", "data.augment_on=device", "dino.local_crop_size=16")
    result = run_pretraining(cfg)
    assert result.global_step == 2
    assert seen == [(torch.uint8, sizes)] * 2  # every training batch went through the device path
    assert torch.isfinite(torch.tensor(result.metrics["train/loss"]))


def test_workers_path_does_not_use_the_device_augment(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: MultiViewAugment, images: torch.Tensor) -> list[torch.Tensor]:
        raise AssertionError("the device path ran with data.augment_on=workers")

    monkeypatch.setattr(MultiViewAugment, "__call__", fail)
    assert run_pretraining(tiny_config("--max-steps", "1", "data.augment_on=workers")).global_step == 1


def test_unknown_augment_on_is_a_clear_error(tiny_config) -> None:
    with pytest.raises(DermkitError, match="data.augment_on='gpu' is unknown.*device"):
        tiny_config("data.augment_on=gpu")
