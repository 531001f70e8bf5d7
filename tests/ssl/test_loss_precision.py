"""Under bf16-mixed every registered SSL method computes its loss in float32."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from dermkit.config import parse_config
from ssl.methods import METHODS
from ssl.pretrain import FLAGS, PretrainConfig, build_device_augment, build_module

SIZE = 32


def _dtypes(value: Any) -> list[torch.dtype]:
    if isinstance(value, torch.Tensor):
        return [value.dtype]
    if isinstance(value, (list, tuple)):
        return [d for v in value for d in _dtypes(v)]
    return []


@pytest.mark.parametrize("name", list(METHODS))
def test_the_loss_sees_float32_under_bf16_autocast(name: str) -> None:
    pl.seed_everything(0, verbose=False)
    cfg = parse_config(PretrainConfig, "test", "test", ["--method", name, "--backbone", "tiny_cnn", "--image-size",
                                                         str(SIZE), "data.augment_on=device"], FLAGS)
    module = build_module(cfg)
    module.build_schedules(10, 10)
    seen: list[torch.dtype] = []
    module.criterion.register_forward_pre_hook(lambda _m, args: seen.extend(_dtypes(args)))
    images = torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8)
    views = build_device_augment(cfg)(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = module.backbone(views[0])
        loss, _ = module.ssl_step(views)
    assert features.dtype == torch.bfloat16  # the network itself does run in bf16
    assert seen and set(seen) == {torch.float32}, (name, seen)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
