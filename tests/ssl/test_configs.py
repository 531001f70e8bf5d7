"""Every configs/ssl_*.yaml preset parses against ssl.pretrain's schema and passes its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermkit.config import parse_config
from ssl.pretrain import FLAGS, PretrainConfig, validate

PRESETS = sorted(Path("configs").glob("ssl_*.yaml"))


def test_every_registered_method_has_a_preset() -> None:
    from ssl.methods import METHODS

    methods = {parse_config(PretrainConfig, "test", "", ["--config", str(p)], FLAGS).method for p in PRESETS}
    assert set(METHODS) <= methods, sorted(set(METHODS) - methods)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_parses_and_validates(preset: Path) -> None:
    cfg = parse_config(PretrainConfig, "test", "", ["--config", str(preset)], FLAGS)
    validate(cfg)
