"""Every configs/synth_*.yaml preset parses against its command's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermkit.config import CONFIG_DIR, parse_config
from dermkit.vocab import MINORITY_CLASSES, canonical_class
from synth.evaluate import SyntheticEvaluateConfig
from synth.generate import GenerateConfig
from synth.model import unet_config
from synth.train import SynthTrainConfig

SCHEMAS = {"synth_train": SynthTrainConfig, "synth_generate": GenerateConfig,
           "synth_evaluate": SyntheticEvaluateConfig}
PRESETS = sorted(CONFIG_DIR.glob("synth_*.yaml"))


def test_presets_exist() -> None:
    assert {p.stem.rsplit("_", 1)[0] if p.stem.startswith("synth_train") else p.stem for p in PRESETS} >= set(SCHEMAS)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_parses(path: Path) -> None:
    schema = next(s for prefix, s in SCHEMAS.items() if path.stem.startswith(prefix))
    cfg = parse_config(schema, "t", "t", ["--config", str(path)])
    if schema is SynthTrainConfig:  # the preset fits the image size
        assert unet_config(cfg.model.preset, 7, cfg.data.image_size)["sample_size"] == cfg.data.image_size
    elif schema is GenerateConfig:
        assert all(canonical_class(c) in MINORITY_CLASSES for c in cfg.classes)
    else:
        assert cfg.synthetic
