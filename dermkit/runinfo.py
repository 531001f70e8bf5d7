"""What every run records in its output folder, so a result can be traced and repeated."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from dermkit.config import REPO_ROOT, to_yaml

_PACKAGES = ("torch", "torchvision", "lightly", "diffusers", "pytorch-lightning", "torchmetrics", "dermkit")


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when there are local changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_info(out_dir: str | Path, cfg: Any, seed: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.yaml`` (the resolved config) and ``run.json`` into ``out_dir``.

    ``run.json`` holds the seed, the git commit, package versions, the command line, the Python
    version and the start time, plus ``extra`` (for example the split hash).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    info = {
        "seed": seed,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    path = out / "run.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path
