"""Shared fixtures: an isolated cache folder, and the real HAM10000 data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``DERMKIT_CACHE`` for one test (demo data and image caches land here)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("DERMKIT_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder shared by a whole session, so the demo data is generated once."""
    return tmp_path_factory.mktemp("demo-cache")


def _ham10000_root() -> Path | None:
    env = os.environ.get("DERMKIT_HAM10000")
    for candidate in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared" / "data" / "ham10000"]:
        if (candidate / "HAM10000_metadata.csv").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def ham10000_root() -> Path:
    """The real HAM10000 folder; skips the test, saying why, when it is not on this machine."""
    root = _ham10000_root()
    if root is None:
        pytest.skip("HAM10000 not found: set DERMKIT_HAM10000 or place it at ../shared/data/ham10000")
    return root
