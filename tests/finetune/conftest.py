"""Fixtures of the fine-tuning tests: the demo data at 32 px."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermkit.config import DataConfig
from dermkit.data.prepare import PreparedData, prepare_data
from tests.finetune.helpers import IMAGE_SIZE


@pytest.fixture(scope="session")
def demo_prepared(demo_cache: Path) -> PreparedData:
    """The demo data prepared at 32 px in the session's cache."""
    return prepare_data(DataConfig(name="demo", image_size=IMAGE_SIZE, cache_dir=str(demo_cache)))


@pytest.fixture(scope="session")
def demo_run(demo_prepared: PreparedData, demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step CPU fine-tune on the demo data (tiny_cnn, 32 px) with synthetic df images; its run folder."""
    from finetune.train import main
    from tests.finetune.helpers import write_manifest

    root = tmp_path_factory.mktemp("finetune")
    manifest = write_manifest(root / "synth", demo_prepared.split_hash, {"df": 5})
    out = root / "run"
    status = main(["--out", str(out), "--manifest", str(manifest), "--backbone", "tiny_cnn",
                   f"data.cache_dir={demo_cache}", f"data.image_size={IMAGE_SIZE}", "data.batch_size=32",
                   "data.num_workers=0", "model.small_stem=true", "trainer.max_epochs=1",
                   "trainer.limit_train_batches=2", "trainer.accelerator=cpu", "synth.max_ratio=1.0"])
    assert status == 0
    return out


@pytest.fixture
def without_grad_cam(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pytorch_grad_cam`` is not importable (as on a machine without the grad-cam package)."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytorch_grad_cam" else real_find_spec(name, *a))
